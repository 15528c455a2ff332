//! `anb-web`: the HTTP face of the ANB Rising Stars Showcase (docs/api.md),
//! with Swagger UI at `/docs`, the OpenAPI document at `/api/openapi.json`,
//! signed file links under `/files/`, and (in single-node mode) the worker
//! pool in the same process.

pub mod api;
pub mod app;
pub mod files;
pub mod nullable;
pub mod page;
pub mod payload;
pub mod problem;
pub mod routes;
pub mod server;
pub mod slots;
pub mod upload;

pub use app::{AppState, Application, endpoint};
