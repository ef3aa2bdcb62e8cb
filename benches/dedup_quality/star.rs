//! Star grouping over k-NN candidate edges: the same rule as pixdex-core's `star_groups`, so that
//! a whole sweep of parameters costs one scoring pass; every run checks it against
//! `find_duplicates` at the parameters it reports.

/// Each item's `k` most similar other items, best first.
pub fn knn_lists(n: usize, sim: &[f32], k: usize) -> Vec<Vec<(usize, f32)>> {
    (0..n)
        .map(|i| {
            let row = &sim[i * n..(i + 1) * n];
            let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            order.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
            order.into_iter().take(k).map(|j| (j, row[j])).collect()
        })
        .collect()
}

/// Stars over weighted edges: centre by degree, then strength, then index.
fn star(n: usize, mut edges: Vec<(usize, usize, f32)>) -> Vec<Vec<usize>> {
    edges.sort_by_key(|e| (e.0, e.1));
    edges.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
    let mut adjacency: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut strength = vec![0f64; n];
    for &(a, b, s) in &edges {
        adjacency[a].push(b);
        adjacency[b].push(a);
        strength[a] += s as f64;
        strength[b] += s as f64;
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| !adjacency[i].is_empty()).collect();
    order.sort_by(|&a, &b| {
        adjacency[b].len().cmp(&adjacency[a].len()).then(strength[b].total_cmp(&strength[a])).then(a.cmp(&b))
    });
    let mut assigned = vec![false; n];
    let mut groups = Vec::new();
    for centre in order {
        if assigned[centre] {
            continue;
        }
        let mut members: Vec<usize> = adjacency[centre].iter().copied().filter(|&m| !assigned[m]).collect();
        members.sort_unstable();
        members.dedup();
        if members.is_empty() {
            continue;
        }
        assigned[centre] = true;
        for &m in &members {
            assigned[m] = true;
        }
        groups.push(std::iter::once(centre).chain(members).collect());
    }
    groups
}

/// Stars over the k-NN edges at or above `t` of one similarity.
pub fn knn_star(lists: &[Vec<(usize, f32)>], t: f32) -> Vec<Vec<usize>> {
    let mut edges = Vec::new();
    for (i, list) in lists.iter().enumerate() {
        edges.extend(list.iter().filter(|e| e.1 >= t).map(|&(j, s)| (i.min(j), i.max(j), s)));
    }
    star(lists.len(), edges)
}

/// A candidate pair as pixdex scores it: similarity over the views, patch geometry.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub a: usize,
    pub b: usize,
    pub similarity: f32,
    pub geometry: f32,
}

/// Stars over the candidates accepted by `similarity + w · geometry >= c`.
pub fn linear_star(n: usize, candidates: &[Candidate], w: f32, c: f32) -> Vec<Vec<usize>> {
    let edges =
        candidates.iter().filter(|x| x.similarity + w * x.geometry >= c).map(|x| (x.a, x.b, x.similarity)).collect();
    star(n, edges)
}

/// Stars over the candidates accepted by `similarity >= t || geometry >= g`.
pub fn rule_star(n: usize, candidates: &[Candidate], t: f32, g: Option<f32>) -> Vec<Vec<usize>> {
    let edges = candidates
        .iter()
        .filter(|c| c.similarity >= t || g.is_some_and(|g| c.geometry >= g))
        .map(|c| (c.a, c.b, c.similarity))
        .collect();
    star(n, edges)
}
