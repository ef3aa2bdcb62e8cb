//! The markdown report: the setup, the parameters chosen on seed A and how they hold on the
//! held-out seeds, the sweep tables, recall per pair type and the mistakes at the defaults.

use pixdex_core::{DEFAULT_MIN_GEOMETRY, DEFAULT_NEAR_THRESHOLD};
use std::collections::BTreeMap;

use crate::library::{Item, Library, Role, is_hard_distractor};
use crate::measure::{Grid, LINEAR_CUTS, SeedResult, WEIGHTS};
use crate::metrics::{MIN_PRECISION, Pairs, Score, Sweep, choose, per_type, scores};

/// The Hamming threshold imagededup uses by default (`max_distance_threshold=10`).
const STANDARD_HAMMING: u32 = 10;

/// How the libraries were made and indexed.
pub struct Setup {
    /// One line per library: files found, embedded, copied, seconds.
    pub index_lines: Vec<String>,
    pub generate_s: f64,
    pub index_s: f64,
}

/// Prints the whole report. `results` holds one entry per library, seed A first, then B.
pub fn print_report(libs: &[Library], results: &[SeedResult], grid: &Grid, setup: &Setup, all_misses: bool) {
    let (a, b) = (&results[0], &results[1]);
    print_setup(libs, results, setup);
    let chosen = Chosen::on_seed_a(a, grid);
    print_default_checks(libs, results, grid);
    print_summary(libs, results, grid, &chosen);
    print_verified_grid(a, b, grid);
    println!("\n## Similarity thresholds alone (star, k = {})\n", grid.k);
    let labels: Vec<String> = grid.thresholds.iter().map(|t| format!("{t:.4}")).collect();
    sweep_table(("threshold", "plain", "views"), &labels, [&a.plain_star, &b.plain_star, &a.views_star, &b.views_star]);
    println!("\n## Perceptual hashes (64 bits, connected components over Hamming distance <= t)\n");
    let labels: Vec<String> = grid.hammings.iter().map(|t| t.to_string()).collect();
    sweep_table(("t", "pHash", "dHash"), &labels, [&a.phash, &b.phash, &a.dhash, &b.dhash]);
    print_recall_per_type(libs, a, b, grid, &chosen);
    print_mistakes(libs, results, all_misses);
    println!(
        "\n**Recommended defaults: similarity {:.4}, geometry {:.2}** (seed A: P / R / F1 {}{}; held-out seed B: {}; current defaults {} / {})",
        grid.thresholds[chosen.bt],
        grid.geometries[chosen.bg],
        slashed(&a.verified[chosen.bg][chosen.bt].0),
        if chosen.ok { "" } else { ", precision floor not reached: max F1" },
        slashed(&b.verified[chosen.bg][chosen.bt].0),
        DEFAULT_NEAR_THRESHOLD,
        DEFAULT_MIN_GEOMETRY
    );
}

/// P is truncated, not rounded, so that a printed 0.980 really meets the precision floor.
fn fmt(s: &Score) -> String {
    format!("{:.3} | {:.3} | {:.3}", (s.p * 1000.0).floor() / 1000.0, s.r, s.f1)
}

/// [`fmt`] for running text: `P / R / F1`.
fn slashed(s: &Score) -> String {
    fmt(s).replace(" | ", " / ")
}

/// A markdown table of two methods' sweeps on seeds A and B, one row per sweep point.
fn sweep_table((point, first, second): (&str, &str, &str), labels: &[String], sweeps: [&Sweep; 4]) {
    println!(
        "| {point} | {first} A: P | R | F1 | {first} B: P | R | F1 | {second} A: P | R | F1 | {second} B: P | R | F1 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, label) in labels.iter().enumerate() {
        let cells: Vec<String> = sweeps.iter().map(|s| fmt(&s[i].0)).collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}

/// Indices of the parameters chosen on seed A (max F1 with P >= `MIN_PRECISION`).
struct Chosen {
    /// Views + verification: geometry and similarity index, and whether P reached the floor.
    bg: usize,
    bt: usize,
    ok: bool,
    /// Plain star, plain components, views-only star (similarity indices).
    pi: usize,
    ci: usize,
    vi: usize,
    /// pHash and dHash (Hamming indices), and the standard Hamming threshold's index.
    phi: usize,
    dhi: usize,
    std_i: usize,
    /// The linear rule: weight and cut index.
    lw: usize,
    lc: usize,
}

impl Chosen {
    fn on_seed_a(a: &SeedResult, grid: &Grid) -> Self {
        let cells: Vec<(usize, usize)> =
            (0..grid.geometries.len()).flat_map(|g| (0..grid.thresholds.len()).map(move |t| (g, t))).collect();
        let cell_scores: Vec<Score> = cells.iter().map(|&(g, t)| a.verified[g][t].0).collect();
        let (best, ok) = choose(&cell_scores);
        let (bg, bt) = cells[best];
        let linear_cells: Vec<(usize, usize)> =
            (0..WEIGHTS.len()).flat_map(|w| (0..LINEAR_CUTS.len()).map(move |c| (w, c))).collect();
        let (li, _) = choose(&linear_cells.iter().map(|&(w, c)| a.linear[w][c]).collect::<Vec<_>>());
        let (lw, lc) = linear_cells[li];
        Self {
            bg,
            bt,
            ok,
            pi: choose(&scores(&a.plain_star)).0,
            ci: choose(&scores(&a.plain_cc)).0,
            vi: choose(&scores(&a.views_star)).0,
            phi: choose(&scores(&a.phash)).0,
            dhi: choose(&scores(&a.dhash)).0,
            std_i: grid.hammings.iter().position(|&t| t == STANDARD_HAMMING).expect("standard threshold in sweep"),
            lw,
            lc,
        }
    }
}

/// The libraries, indexing and scoring times.
fn print_setup(libs: &[Library], results: &[SeedResult], setup: &Setup) {
    println!("# Near-duplicate quality: pixdex `find_duplicates` vs perceptual hashes\n");
    for lib in libs {
        let count = |f: &dyn Fn(&Item) -> bool| lib.items.iter().filter(|i| f(i)).count();
        println!(
            "seed {}: {} images = {} originals + {} edits, {} in natural families, {} distractors ({} hard); {} truth pairs",
            lib.name,
            lib.items.len(),
            count(&|i| i.role == Role::Original),
            count(&|i| matches!(i.role, Role::Edited(_))),
            count(&|i| matches!(i.role, Role::Natural(_))),
            count(&|i| i.role == Role::Distractor),
            count(&|i| i.role == Role::Distractor && is_hard_distractor(&i.rel.to_string_lossy())),
            lib.truth.len()
        );
    }
    for line in &setup.index_lines {
        println!("indexed {line}");
    }
    println!(
        "time: generate {:.1} s, index {:.1} s (ViT-S/14 real weights, CPU, 3 views per image)",
        setup.generate_s, setup.index_s
    );
    for (lib, r) in libs.iter().zip(results) {
        let n = lib.items.len();
        println!(
            "seed {}: {} candidate pairs ({:.1} per image); scoring all of them (views + both geometries) {:.2} s = {:.2} ms/pair; find_duplicates at the defaults {:.2} s",
            lib.name,
            r.candidates.len(),
            r.candidates.len() as f64 / n as f64,
            r.scoring_s,
            1000.0 * r.scoring_s / r.candidates.len().max(1) as f64,
            r.default_run.2
        );
    }
}

/// Whether the bench's star over the candidate scores reproduces `find_duplicates` at the
/// defaults (when the defaults are points of the sweep).
fn print_default_checks(libs: &[Library], results: &[SeedResult], grid: &Grid) {
    let default_t = grid.thresholds.iter().position(|&t| (t - DEFAULT_NEAR_THRESHOLD).abs() < 1e-4);
    let default_g = grid.geometries.iter().position(|&g| (g - DEFAULT_MIN_GEOMETRY).abs() < 1e-4);
    let Some((t, g)) = default_t.zip(default_g) else { return };
    for (lib, r) in libs.iter().zip(results) {
        let same = r.verified[g][t].1 == r.default_run.1;
        println!(
            "check seed {}: the bench's star over candidate scores {} find_duplicates at the defaults",
            lib.name,
            if same { "reproduces" } else { "DIFFERS FROM" }
        );
    }
}

/// Every method at its parameters chosen on A, on A and B (and one line per further seed).
fn print_summary(libs: &[Library], results: &[SeedResult], grid: &Grid, c: &Chosen) {
    let (a, b) = (&results[0], &results[1]);
    let (th, hm) = (&grid.thresholds, &grid.hammings);
    println!("\n## Summary (parameters chosen on seed A: max F1 with P >= {MIN_PRECISION}; B is held out)\n");
    println!("| method | parameters | A: P | R | F1 | B: P | R | F1 |");
    println!("|---|---|---|---|---|---|---|---|");
    let row = |method: &str, thr: String, sa: &Score, sb: &Score| {
        println!("| {method} | {thr} | {} | {} |", fmt(sa), fmt(sb));
    };
    row(
        "**pixdex `find_duplicates`, defaults** (views + patch verification, star)",
        format!("sim >= {DEFAULT_NEAR_THRESHOLD} or geo >= {DEFAULT_MIN_GEOMETRY}"),
        &a.default_run.0,
        &b.default_run.0,
    );
    row(
        "views + verification, tuned on A",
        format!("sim >= {:.4} or geo >= {:.2}", th[c.bt], grid.geometries[c.bg]),
        &a.verified[c.bg][c.bt].0,
        &b.verified[c.bg][c.bt].0,
    );
    row(
        "views only (no verification), star, tuned",
        format!("{:.4}", th[c.vi]),
        &a.views_star[c.vi].0,
        &b.views_star[c.vi].0,
    );
    row(
        "plain cosine, star, tuned (pixdex before views)",
        format!("{:.4}", th[c.pi]),
        &a.plain_star[c.pi].0,
        &b.plain_star[c.pi].0,
    );
    row(
        "plain cosine, connected components, tuned",
        format!("{:.4}", th[c.ci]),
        &a.plain_cc[c.ci].0,
        &b.plain_cc[c.ci].0,
    );
    row("pHash tuned", format!("<= {}", hm[c.phi]), &a.phash[c.phi].0, &b.phash[c.phi].0);
    row("pHash standard", format!("<= {STANDARD_HAMMING}"), &a.phash[c.std_i].0, &b.phash[c.std_i].0);
    row("dHash tuned", format!("<= {}", hm[c.dhi]), &a.dhash[c.dhi].0, &b.dhash[c.dhi].0);
    row("dHash standard", format!("<= {STANDARD_HAMMING}"), &a.dhash[c.std_i].0, &b.dhash[c.std_i].0);
    row(
        "views + linear rule, tuned on A",
        format!("sim + {:.2} geo >= {:.4}", WEIGHTS[c.lw], LINEAR_CUTS[c.lc]),
        &a.linear[c.lw][c.lc],
        &b.linear[c.lw][c.lc],
    );
    if !c.ok {
        println!("\n(no verified parameters reached the precision floor on A: max F1 shown)");
    }
    for (lib, r) in libs.iter().zip(results).skip(2) {
        println!(
            "\nseed {} (held out too): pixdex defaults {}; views + verification tuned on A {}; linear rule tuned on A {}; views only {}; plain cosine {}; pHash <= {} {}",
            lib.name,
            slashed(&r.default_run.0),
            slashed(&r.verified[c.bg][c.bt].0),
            slashed(&r.linear[c.lw][c.lc]),
            slashed(&r.views_star[c.vi].0),
            slashed(&r.plain_star[c.pi].0),
            hm[c.phi],
            slashed(&r.phash[c.phi].0),
        );
    }
}

/// F1 of views + verification on A / B over the similarity × geometry grid.
fn print_verified_grid(a: &SeedResult, b: &SeedResult, grid: &Grid) {
    println!(
        "\n## Views + verification: F1 on A / B by similarity threshold (rows) and geometry threshold (columns)\n"
    );
    let mut header = "| sim \\ geo |".to_string();
    let mut rule = "|---|".to_string();
    for g in &grid.geometries {
        header += &format!(" {g:.2} |");
        rule += "---|";
    }
    println!("{header}\n{rule}");
    for (ti, t) in grid.thresholds.iter().enumerate().filter(|(_, t)| **t >= 0.96) {
        let mut line = format!("| {t:.4} |");
        for gi in 0..grid.geometries.len() {
            let (x, y) = (&a.verified[gi][ti].0, &b.verified[gi][ti].0);
            let mark = if x.p >= MIN_PRECISION { "" } else { "*" };
            line += &format!(" {:.3}{mark} / {:.3} |", x.f1, y.f1);
        }
        println!("{line}");
    }
    println!("(* : precision below {MIN_PRECISION} on A)");
}

/// Recall of four methods per pair type on A / B, with the plain cosine of A's pairs.
fn print_recall_per_type(libs: &[Library], a: &SeedResult, b: &SeedResult, grid: &Grid, c: &Chosen) {
    let (th, hm) = (&grid.thresholds, &grid.hammings);
    let columns: Vec<(String, [&Pairs; 2])> = vec![
        ("pixdex defaults".to_string(), [&a.default_run.1, &b.default_run.1]),
        (format!("views only {:.4}", th[c.vi]), [&a.views_star[c.vi].1, &b.views_star[c.vi].1]),
        (format!("plain star {:.4}", th[c.pi]), [&a.plain_star[c.pi].1, &b.plain_star[c.pi].1]),
        (format!("pHash <= {}", hm[c.phi]), [&a.phash[c.phi].1, &b.phash[c.phi].1]),
    ];
    println!("\n## Recall per pair type (A / B)\n");
    let mut header = "| pair type | n A | n B |".to_string();
    let mut rule = "|---|---|---|".to_string();
    for (name, _) in &columns {
        header += &format!(" {name} A | B |");
        rule += "---|---|";
    }
    println!("{header} cosine A: min | median |\n{rule}---|---|");
    let types: Vec<[BTreeMap<String, (usize, usize)>; 2]> =
        columns.iter().map(|(_, [x, y])| [per_type(&libs[0], x), per_type(&libs[1], y)]).collect();
    let mut names: Vec<&String> = types[0][0].keys().chain(types[0][1].keys()).collect();
    names.sort();
    names.dedup();
    let n_a = libs[0].items.len();
    for name in names {
        let rec = |m: &BTreeMap<String, (usize, usize)>| {
            m.get(name).map_or("-".to_string(), |&(n, f)| format!("{:.2}", f as f64 / n.max(1) as f64))
        };
        let count = |m: &BTreeMap<String, (usize, usize)>| m.get(name).map_or(0, |c| c.0);
        let mut line = format!("| {name} | {} | {} |", count(&types[0][0]), count(&types[0][1]));
        for [x, y] in &types {
            line += &format!(" {} | {} |", rec(x), rec(y));
        }
        let mut cosines: Vec<f32> = libs[0]
            .pair_type
            .iter()
            .filter(|(_, t)| *t == name)
            .map(|(&(x, y), _)| a.cos[x as usize * n_a + y as usize])
            .collect();
        cosines.sort_by(f32::total_cmp);
        let (min, median) = cosines.first().map_or((f32::NAN, f32::NAN), |&m| (m, cosines[cosines.len() / 2]));
        println!("{line} {min:.3} | {median:.3} |");
    }
}

/// False and missed pairs at the defaults, per seed (the first 12 misses unless `all_misses`).
fn print_mistakes(libs: &[Library], results: &[SeedResult], all_misses: bool) {
    for (lib, res) in libs.iter().zip(results) {
        let short = |k: u32| lib.items[k as usize].rel.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let describe = |&(x, y): &(u32, u32)| {
            let (x_, y_) = (x as usize, y as usize);
            let scores = res
                .candidates
                .iter()
                .find(|c| (c.a, c.b) == (x_.min(y_), x_.max(y_)))
                .map_or("not a candidate".to_string(), |c| format!("sim {:.3} geo {:.3}", c.similarity, c.geometry));
            format!("{} ~ {} ({scores})", short(x), short(y))
        };
        let mut wrong: Vec<(u32, u32)> = res.default_run.1.difference(&lib.truth).copied().collect();
        wrong.sort_unstable();
        let line: Vec<String> = wrong.iter().take(10).map(describe).collect();
        println!("\nseed {}: {} false pairs at the defaults: {}", lib.name, wrong.len(), line.join("; "));
        let mut missed: Vec<(u32, u32)> = lib.truth.difference(&res.default_run.1).copied().collect();
        missed.sort_unstable();
        let candidate = |&(x, y): &(u32, u32)| res.candidates.iter().any(|c| (c.a, c.b) == (x as usize, y as usize));
        let not_candidates = missed.iter().filter(|p| !candidate(p)).count();
        println!("  missed pairs that were not candidates: {not_candidates}");
        let line: Vec<String> = missed.iter().take(if all_misses { usize::MAX } else { 12 }).map(describe).collect();
        println!("  {} missed pairs: {}", missed.len(), line.join("; "));
    }
}
