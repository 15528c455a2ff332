//! A full disk while storing an upload, on real file systems that fill up:
//! the server runs with a small tmpfs over its data directory and a smaller
//! one over its file store (see `TestApp::spawn_with_disks`).

use anb_e2e::{Clips, TestApp};

#[tokio::test]
async fn a_full_disk_answers_507_leaves_nothing_half_written_and_the_next_upload_that_fits_is_stored() {
    let clips = Clips::get().await;
    let valid = std::fs::metadata(clips.path("valid.mp4")).unwrap().len();
    let light = std::fs::metadata(clips.path("light.mp4")).unwrap().len();
    // The data directory (uploads in progress, the database) holds 24 MB; the
    // file store holds less than the valid clip but more than the light one.
    let store = (valid / 2).max(light + (256 << 10));
    assert!(light < store && store < valid, "clip sizes do not suit the test: light {light}, valid {valid}");
    let app = TestApp::spawn_with_disks(0, &[], &[("", "24m"), ("files", &format!("{}k", store >> 10))]).await;
    let token = app.player("full@example.com", "Fulano", "Cali").await;
    let nothing_left = |when: &str| {
        assert_eq!(app.files_in("tmp"), Vec::<std::path::PathBuf>::new(), "{when}: upload scratch left");
        assert_eq!(app.files_in("files"), Vec::<std::path::PathBuf>::new(), "{when}: partial object left");
    };

    // 1. The upload itself does not fit where uploads are received.
    let (status, body) = app.upload(&token, Some("Demasiado grande"), Some(&clips.path("big.mp4"))).await;
    assert_eq!((status, body["detail"].as_str()), (507, Some("No hay espacio para almacenar el archivo.")), "{body}");
    assert_eq!(body["status"], 507);
    nothing_left("receiving");

    // 2. It is received and checked, but the store has no room for it.
    let (status, body) = app.upload(&token, Some("No cabe"), Some(&clips.path("valid.mp4"))).await;
    assert_eq!((status, body["status"].as_u64()), (507, Some(507)), "{body}");
    nothing_left("storing");
    let (_, mine) = app.get("/api/videos", Some(&token)).await;
    assert_eq!(mine, serde_json::json!([]), "no video row for a failed upload");

    // 3. Space was given back: an upload that fits is stored whole.
    let (status, body) = app.upload(&token, Some("Sí cabe"), Some(&clips.path("light.mp4"))).await;
    assert_eq!(status, 201, "{body}");
    let stored = app.files_in("files");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(std::fs::metadata(&stored[0]).unwrap().len(), light, "the stored original is whole");
    assert!(app.log().contains("storage full"), "the failure is logged as such");
}
