//! schemathesis against the live OpenAPI document: every operation, with a
//! signed-in user, generated and mutated inputs and stateful sequences. No
//! server error, and every response as documented (status, content type,
//! body schema, headers such as `Allow` on a 405).

use std::process::Command;

use anb_e2e::{Clips, TestApp};

#[tokio::test]
async fn the_live_api_conforms_to_its_spec_under_schemathesis() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(0, &[]).await;
    let token = app.player("schema@example.com", "Sara", "Cali").await;
    assert_eq!(app.upload(&token, Some("Semilla"), Some(&clips.path("valid.mp4"))).await.0, 201);

    let schemathesis = anb_testkit::test_tool("schemathesis", "ANB_SCHEMATHESIS");
    let output = Command::new(&schemathesis)
        .args(["run", &app.url("/api/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // Every check but "schema-valid requests are accepted": the schema
        // cannot say that password2 must equal password1 or that a file must
        // be an MP4, so the server rightly refuses some schema-valid inputs.
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "40", "--seed", "20261124", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its example cache goes with the test's data, not into the tree.
        .current_dir(app.data.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", schemathesis.display()));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "schemathesis found failures:\n{report}\n{}", String::from_utf8_lossy(&output.stderr));
    let summary = report.lines().rev().find(|l| l.contains("generated")).unwrap_or_default();
    println!("schemathesis: {}", summary.trim());
    assert!(!app.log().contains("panicked"), "{}", app.log());
    assert!(!app.log().contains("unhandled server error"), "{}", app.log());
}
