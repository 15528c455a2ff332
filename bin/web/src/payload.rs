//! A JSON payload written straight from `serde`, for the hot public lists.
//!
//! poem-openapi's `Json<T>` builds a `serde_json::Value` tree (a `BTreeMap`
//! per object) and then writes it: for a page of 20 videos that is hundreds
//! of allocations, the largest cost of a cached public list in the profile
//! (docs/benchmarks.md). `SerdeJson<T>` documents the same schema (from
//! `T`'s `Object` derive) and writes the bytes in one pass; `T` derives
//! `serde::Serialize` with the same field names, which the API tests and
//! schemathesis hold it to.

use poem::IntoResponse;
use poem::http::header;
use poem_openapi::ApiResponse;
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::Type;

/// A JSON response body written by `serde_json` directly.
pub struct SerdeJson<T>(pub T);

impl<T: Type> Payload for SerdeJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + serde::Serialize + Send> IntoResponse for SerdeJson<T> {
    fn into_response(self) -> poem::Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => poem::Response::builder().header(header::CONTENT_TYPE, <Self as Payload>::CONTENT_TYPE).body(body),
            // Only a failing `Serialize` impl (none here) gets here.
            Err(error) => {
                tracing::error!(%error, "serialising a response");
                poem::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

impl<T: Type + serde::Serialize + Send> ApiResponse for SerdeJson<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType { content_type: Self::CONTENT_TYPE, schema: Self::schema_ref() }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::Object;
    use poem_openapi::types::ToJSON;

    use super::*;

    #[derive(Object, serde::Serialize)]
    struct Item {
        video_id: i64,
        title: String,
        votes: i64,
    }

    #[tokio::test]
    async fn writes_what_poem_openapi_s_json_writes() {
        let items =
            || vec![Item { video_id: 1, title: "Triple \"✓\"\n".into(), votes: 3 }, Item { video_id: 2, title: String::new(), votes: 0 }];
        let response = SerdeJson(items()).into_response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json; charset=utf-8");
        let ours: serde_json::Value = serde_json::from_slice(&response.into_body().into_vec().await.unwrap()).unwrap();
        assert_eq!(ours, items().to_json().unwrap());
    }
}
