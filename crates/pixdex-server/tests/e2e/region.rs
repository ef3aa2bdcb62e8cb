//! RegionSearch: a pasted object found with its box by the real model, "other photos with this
//! object" from a stored image, and every refusal (tiny model, always run).

use pixdex_server::pb;
use std::path::{Path, PathBuf};
use tonic::Code;

use crate::common::*;

/// The object: the cat's eye and nose in `skimage/chelsea.png` (left, top, width, height). That
/// photo is not in the collection, so the host below is the only image that contains it.
const OBJECT: (u32, u32, u32, u32) = (125, 75, 150, 120);

/// The photo the object is pasted into, and where: half a patch off the region grid on both
/// axes (a 640-pixel photo is embedded at 448 pixels, 14 pixels a patch: 20 stored pixels).
const HOST: (&str, i64, i64) = ("gcompris/explore_monuments_usa_navajo.jpg", 231, 131);

/// Photos stored as they are.
const OTHERS: [&str; 7] = [
    "kde/path_640x480.jpg",
    "skimage/coffee.jpg",
    "kde/colorfulcups_640x480.jpg",
    "gcompris/explore_monuments_india_goldentemple.jpg",
    "gcompris/categorization_renewable_windmill3.jpg",
    "skimage/rocket.jpg",
    "gcompris/erase_giraffe.jpg",
];

fn by_bytes(bytes: Vec<u8>, region: Option<pb::PixelBox>, k: u32) -> pb::RegionSearchRequest {
    pb::RegionSearchRequest {
        query: Some(pb::region_search_request::Query::Image(bytes)),
        r#box: region,
        k,
        ..Default::default()
    }
}

fn by_stored(image: Option<pb::ImageRef>, region: Option<pb::PixelBox>, k: u32) -> pb::RegionSearchRequest {
    pb::RegionSearchRequest {
        query: Some(pb::region_search_request::Query::Stored(image.expect("a reference"))),
        r#box: region,
        k,
        ..Default::default()
    }
}

fn pixel_box(x: f32, y: f32, w: f32, h: f32) -> Option<pb::PixelBox> {
    Some(pb::PixelBox { x, y, w, h })
}

fn iou(a: &pb::PixelBox, b: &pb::PixelBox) -> f32 {
    let ix = ((a.x + a.w).min(b.x + b.w) - a.x.max(b.x)).max(0.0);
    let iy = ((a.y + a.h).min(b.y + b.h) - a.y.max(b.y)).max(0.0);
    let inter = ix * iy;
    inter / (a.w * a.h + b.w * b.h - inter)
}

fn paths(r: &pb::RegionSearchResponse) -> Vec<String> {
    r.hits.iter().map(|h| h.image.as_ref().expect("a record").path.clone()).collect()
}

/// The first hit's box, which must lie inside its image (stored pixels; these files have no
/// EXIF orientation, so stored and upright sizes agree).
fn first_box(r: &pb::RegionSearchResponse) -> pb::PixelBox {
    let hit = r.hits.first().expect("a hit");
    let (image, b) = (hit.image.as_ref().expect("a record"), hit.r#box.expect("a box"));
    assert!(b.w > 0.0 && b.h > 0.0 && b.x >= 0.0 && b.y >= 0.0, "{b:?}");
    assert!(b.x + b.w <= image.width as f32 + 1e-3 && b.y + b.h <= image.height as f32 + 1e-3, "{b:?} in {image:?}");
    b
}

/// Runs an index job over the library with these options (roots filled in) to its end.
async fn index_library_with(server: &mut TestServer, request: pb::StartIndexJobRequest) -> pb::IndexJob {
    let root = server.library().canonicalize().unwrap().display().to_string();
    let request = pb::StartIndexJobRequest { roots: vec![root], ..request };
    let job = server.client.index.start_index_job(request).await.expect("job starts").into_inner();
    watch(&mut server.client, &job.job_id).await.pop().expect("a final state")
}

/// A shared photo, at most 640 pixels a side.
fn photo(shared: &Path, name: &str) -> image::RgbImage {
    let img = image::open(shared.join("data/photos").join(name)).expect("a shared photo").to_rgb8();
    if img.width().max(img.height()) <= 640 {
        return img;
    }
    image::DynamicImage::ImageRgb8(img).resize(640, 640, image::imageops::FilterType::Lanczos3).to_rgb8()
}

/// Writes the library (the others, and the host with the object pasted in) and returns the
/// object's PNG bytes, the host's path and the pasted rectangle.
fn pasted_library(shared: &Path, lib: &Path) -> (Vec<u8>, PathBuf, pb::PixelBox) {
    for name in OTHERS {
        photo(shared, name).save(lib.join(Path::new(name).file_name().unwrap()).with_extension("png")).unwrap();
    }
    let (ox, oy, ow, oh) = OBJECT;
    let object = image::imageops::crop_imm(&photo(shared, "skimage/chelsea.png"), ox, oy, ow, oh).to_image();
    let (name, x, y) = HOST;
    let mut host = photo(shared, name);
    image::imageops::replace(&mut host, &object, x, y);
    let file = lib.join("host.png");
    host.save(&file).unwrap();
    (
        png_bytes(&object),
        file.canonicalize().unwrap(),
        pb::PixelBox { x: x as f32, y: y as f32, w: ow as f32, h: oh as f32 },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pasted_object_is_found_with_its_box() {
    let Some(shared) = shared_dir() else { return };
    let mut server = TestServer::start_with(|_| {}, real_loader(&shared), true).await;
    let (object, host, pasted) = pasted_library(&shared, &server.library());
    // One index job, one batch: the region reduction is fitted on every image, whatever order
    // the decoders finish in.
    let last =
        index_library_with(&mut server, pb::StartIndexJobRequest { skip_dedup_views: true, ..Default::default() })
            .await;
    assert_eq!(last.state(), pb::JobState::Succeeded, "{last:?}");
    assert_eq!(last.embedded as usize, OTHERS.len() + 1, "{last:?}");
    let host = host.display().to_string();
    let c = &mut server.client;

    // The object's own pixels: the host first, with the box where the object was pasted.
    let r = c.search.region_search(by_bytes(object.clone(), None, 5)).await.unwrap().into_inner();
    assert_eq!(r.hits.len(), 5);
    assert_eq!(paths(&r)[0], host, "{:?}", paths(&r));
    let found = first_box(&r);
    assert!(iou(&found, &pasted) >= 0.5, "box {found:?} against the pasted {pasted:?}");

    // The stored host, by path and by id, with a box around the object: the server reads the
    // file again and cuts the same pixels, so the answer is the same.
    let by_path = c.search.region_search(by_stored(path_ref(&host), Some(pasted), 5)).await.unwrap().into_inner();
    assert_eq!(paths(&by_path), paths(&r));
    assert!(iou(&first_box(&by_path), &pasted) >= 0.5, "{:?}", by_path.hits[0]);
    let id = r.hits[0].image.as_ref().unwrap().id;
    let by_id = c.search.region_search(by_stored(id_ref(id), Some(pasted), 5)).await.unwrap().into_inner();
    assert_eq!(paths(&by_id), paths(&r));

    // "Other photos with this object": exclude_self leaves the host out (the others remain).
    let mut q = by_stored(id_ref(id), Some(pasted), 5);
    q.exclude_self = true;
    let others = c.search.region_search(q).await.unwrap().into_inner();
    assert_eq!(others.hits.len(), 5, "{:?}", paths(&others));
    assert!(!paths(&others).contains(&host), "{:?}", paths(&others));

    // A box that leaves the host, and k over the limit, are refused.
    let e = c.search.region_search(by_stored(id_ref(id), pixel_box(600.0, 10.0, 100.0, 100.0), 5)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = c.search.region_search(by_bytes(object, None, 5000)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn region_search_answers_and_refuses_with_the_documented_statuses() {
    let mut server = TestServer::start(|_| {}).await;
    let files = make_library(&server.library(), 4);
    let last = index_library_with(&mut server, pb::StartIndexJobRequest::default()).await;
    assert_eq!((last.embedded, last.failed), (4, 1), "{last:?}");
    let sub = format!("{}/", server.library().canonicalize().unwrap().join("sub").display());
    let bad = server.library().canonicalize().unwrap().join("bad.jpg").display().to_string();
    let c = &mut server.client;
    c.images
        .upsert_image(pb::UpsertImageRequest { key: "phone/up.png".into(), image: png_bytes(&picture(9, 90, 70)) })
        .await
        .unwrap();
    let path = |i: usize| files[i].display().to_string();

    // A whole image by bytes: k hits, each box inside its image.
    let bytes = std::fs::read(&files[2]).unwrap();
    let r = c.search.region_search(by_bytes(bytes.clone(), None, 3)).await.unwrap().into_inner();
    assert_eq!(r.hits.len(), 3, "{:?}", paths(&r));
    for hit in &r.hits {
        first_box(&pb::RegionSearchResponse { hits: vec![hit.clone()] });
    }
    // exclude_self with bytes leaves out the stored file with the same bytes.
    let mut q = by_bytes(bytes.clone(), None, 10);
    q.exclude_self = true;
    let r = c.search.region_search(q).await.unwrap().into_inner();
    assert!(!r.hits.is_empty() && !paths(&r).contains(&path(2)), "{:?}", paths(&r));
    // A stored image with a box; exclude_self leaves it out.
    let region = pixel_box(10.5, 8.0, 40.0, 30.25);
    let r = c.search.region_search(by_stored(path_ref(&path(2)), region, 10)).await.unwrap().into_inner();
    assert!(paths(&r).contains(&path(2)), "{:?}", paths(&r));
    let mut q = by_stored(path_ref(&path(2)), region, 10);
    q.exclude_self = true;
    let r = c.search.region_search(q).await.unwrap().into_inner();
    assert!(!r.hits.is_empty() && !paths(&r).contains(&path(2)), "{:?}", paths(&r));
    // path_prefix and min_score filter; candidates may be set.
    let mut q = by_bytes(bytes.clone(), None, 10);
    q.path_prefix = sub.clone();
    q.candidates = 2;
    let r = c.search.region_search(q).await.unwrap().into_inner();
    assert!(!r.hits.is_empty() && paths(&r).iter().all(|p| p.starts_with(&sub)), "{:?}", paths(&r));
    let mut q = by_bytes(bytes.clone(), None, 10);
    q.min_score = Some(0.5);
    let r = c.search.region_search(q).await.unwrap().into_inner();
    assert!(r.hits.iter().all(|h| h.score >= 0.5), "{r:?}");

    let refused = |r: Result<tonic::Response<pb::RegionSearchResponse>, tonic::Status>, code: Code, says: &str| {
        let e = r.expect_err("refused");
        assert_eq!(e.code(), code, "{e}");
        assert!(e.message().contains(says), "`{says}` not in: {e}");
    };
    // Boxes: outside the image (82×72), without area, not finite.
    for (region, says) in [
        (pixel_box(70.0, 10.0, 20.0, 20.0), "not inside"),
        (pixel_box(-1.0, 10.0, 20.0, 20.0), "not inside"),
        (pixel_box(10.0, 10.0, 0.0, 20.0), "no area"),
        (pixel_box(10.0, 10.0, 20.0, -5.0), "no area"),
        (pixel_box(f32::NAN, 10.0, 20.0, 20.0), "no area"),
        (pixel_box(10.0, 10.0, f32::INFINITY, 20.0), "no area"),
    ] {
        refused(c.search.region_search(by_bytes(bytes.clone(), region, 3)).await, Code::InvalidArgument, says);
        refused(c.search.region_search(by_stored(path_ref(&path(2)), region, 3)).await, Code::InvalidArgument, says);
    }
    // Limits.
    refused(c.search.region_search(by_bytes(bytes.clone(), None, 5000)).await, Code::InvalidArgument, "k must be");
    let mut q = by_bytes(bytes.clone(), None, 3);
    q.candidates = 5000;
    refused(c.search.region_search(q).await, Code::InvalidArgument, "candidates must be");
    let mut q = by_bytes(bytes.clone(), None, 3);
    q.min_score = Some(2.0);
    refused(c.search.region_search(q).await, Code::InvalidArgument, "min_score");
    // A region so thin that sizing its first embedding by its short side alone would need
    // thousands of patches: the search bounds that grid, so it is simply answered.
    let thin = png_bytes(&picture(3, 4, 2000));
    c.search.region_search(by_bytes(thin, None, 3)).await.expect("a thin region is answered");
    // Bytes and queries.
    refused(
        c.search.region_search(by_bytes(b"GIF89a but not really".to_vec(), None, 3)).await,
        Code::InvalidArgument,
        "cannot decode",
    );
    refused(c.search.region_search(by_bytes(Vec::new(), None, 3)).await, Code::InvalidArgument, "empty");
    refused(c.search.region_search(pb::RegionSearchRequest::default()).await, Code::InvalidArgument, "missing query");
    // Stored images that do not exist, or whose pixels cannot be read again.
    refused(c.search.region_search(by_stored(id_ref(987_654), None, 3)).await, Code::NotFound, "987654");
    refused(c.search.region_search(by_stored(path_ref("/no/such.jpg"), None, 3)).await, Code::NotFound, "/no/such.jpg");
    refused(
        c.search.region_search(by_stored(path_ref(&bad), None, 3)).await,
        Code::FailedPrecondition,
        "could not be indexed",
    );
    refused(
        c.search.region_search(by_stored(path_ref("phone/up.png"), None, 3)).await,
        Code::FailedPrecondition,
        "uploaded",
    );
    picture(40, 82, 72).save(&files[2]).unwrap();
    refused(c.search.region_search(by_stored(path_ref(&path(2)), None, 3)).await, Code::FailedPrecondition, "changed");
    std::fs::remove_file(&files[1]).unwrap();
    refused(c.search.region_search(by_stored(path_ref(&path(1)), None, 3)).await, Code::FailedPrecondition, "gone");

    // Still serving.
    let r = c.search.region_search(by_stored(path_ref(&path(0)), None, 2)).await.unwrap().into_inner();
    assert_eq!(r.hits.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn region_search_needs_region_grids() {
    let mut server = TestServer::start(|_| {}).await;
    make_library(&server.library(), 3);
    let last =
        index_library_with(&mut server, pb::StartIndexJobRequest { skip_region_grids: true, ..Default::default() })
            .await;
    assert_eq!(last.state(), pb::JobState::Succeeded, "{last:?}");
    let q = by_bytes(png_bytes(&picture(1, 64, 64)), None, 3);
    let e = server.client.search.region_search(q).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("no region grids"), "{e}");
    // Similarity search does not need them.
    let r = server.client.search.search(image_query(png_bytes(&picture(1, 64, 64)), 3)).await.unwrap().into_inner();
    assert_eq!(r.hits.len(), 3);
}
