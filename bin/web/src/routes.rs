//! The route table, read from the OpenAPI document the API itself
//! publishes (plus the few routes outside it), so that the `Allow` header of
//! a 405 and the names of path parameters in error messages can never
//! disagree with the routes.

/// One segment of a route's path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}` in the document, any one segment in a request.
    Param(String),
    /// Any number of segments (`/files/*key`).
    Rest,
}

/// A route: its path pattern and the methods it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    segments: Vec<Segment>,
    methods: Vec<String>,
}

/// Every route of the server.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Methods in the order an `Allow` header lists them.
const METHOD_ORDER: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl RouteTable {
    /// The routes of an OpenAPI document (`paths`, under `prefix`).
    ///
    /// # Errors
    /// When `spec` is not an OpenAPI document in JSON.
    pub fn from_openapi(spec: &str, prefix: &str) -> Result<Self, String> {
        let document: serde_json::Value = serde_json::from_str(spec).map_err(|e| format!("OpenAPI document: {e}"))?;
        let paths = document.get("paths").and_then(serde_json::Value::as_object).ok_or("OpenAPI document without paths")?;
        let mut table = Self::default();
        for (path, operations) in paths {
            let methods: Vec<String> = operations.as_object().into_iter().flat_map(|o| o.keys()).map(|m| m.to_ascii_uppercase()).collect();
            table.add(&format!("{prefix}{path}"), &methods.iter().map(String::as_str).collect::<Vec<_>>());
        }
        Ok(table)
    }

    /// Adds a route: `/a/{param}/b`, or `/a/*` for everything under `/a/`.
    pub fn add(&mut self, pattern: &str, methods: &[&str]) {
        let segments = split(pattern)
            .map(|s| match s {
                "*" => Segment::Rest,
                s if s.starts_with('{') && s.ends_with('}') => Segment::Param(s[1..s.len() - 1].to_owned()),
                s => Segment::Literal(s.to_owned()),
            })
            .collect();
        let mut methods: Vec<String> = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        methods.sort_by_key(|m| METHOD_ORDER.iter().position(|o| o == m).unwrap_or(METHOD_ORDER.len()));
        methods.dedup();
        self.routes.push(Route { segments, methods });
    }

    /// The `Allow` header for `path`, when some route has it.
    pub fn allow(&self, path: &str) -> Option<String> {
        self.find(path).map(|route| route.methods.join(", "))
    }

    /// The name of the `index`-th parameter (0-based) of the route `path`
    /// matches.
    pub fn param_name(&self, path: &str, index: usize) -> Option<&str> {
        self.find(path)?
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(name) => Some(name.as_str()),
                _ => None,
            })
            .nth(index)
    }

    /// The pattern of the route `path` matches (`/api/videos/{video_id}`).
    pub fn template(&self, path: &str) -> Option<String> {
        let route = self.find(path)?;
        let segments: Vec<String> = route
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.clone(),
                Segment::Param(name) => format!("{{{name}}}"),
                Segment::Rest => "*".to_owned(),
            })
            .collect();
        Some(format!("/{}", segments.join("/")))
    }

    fn find(&self, path: &str) -> Option<&Route> {
        let wanted: Vec<&str> = split(path).collect();
        // A literal beats a parameter: `/videos/upload` is not `/videos/{id}`.
        let score = |route: &Route| route.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
        self.routes.iter().filter(|route| matches(&route.segments, &wanted)).max_by_key(|route| score(route))
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches(pattern: &[Segment], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (Some(Segment::Rest), Some(_)) => true,
        (None, None) => true,
        (Some(Segment::Literal(l)), Some(p)) if l == p => matches(&pattern[1..], &path[1..]),
        (Some(Segment::Param(_)), Some(_)) => matches(&pattern[1..], &path[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let spec = r#"{"paths": {
            "/videos": {"get": {}},
            "/videos/upload": {"post": {}},
            "/videos/{video_id}": {"delete": {}, "get": {}},
            "/public/videos/{video_id}/vote": {"post": {}}
        }}"#;
        let mut table = RouteTable::from_openapi(spec, "/api").unwrap();
        table.add("/files/*", &["GET", "HEAD"]);
        table
    }

    #[test]
    fn allow_lists_the_methods_of_the_matching_route_in_a_stable_order() {
        let table = table();
        assert_eq!(table.allow("/api/videos/12").as_deref(), Some("GET, DELETE"));
        assert_eq!(table.allow("/api/videos/upload").as_deref(), Some("POST"), "a literal beats a parameter");
        assert_eq!(table.allow("/api/videos/").as_deref(), Some("GET"));
        assert_eq!(table.allow("/files/processed/a.mp4").as_deref(), Some("GET, HEAD"));
        assert_eq!(table.allow("/api/nothing"), None);
        assert_eq!(table.allow("/files"), None);
    }

    #[test]
    fn a_path_is_known_by_its_route_s_template() {
        let table = table();
        assert_eq!(table.template("/api/videos/12").as_deref(), Some("/api/videos/{video_id}"));
        assert_eq!(table.template("/api/videos/upload").as_deref(), Some("/api/videos/upload"));
        assert_eq!(table.template("/files/processed/a.mp4").as_deref(), Some("/files/*"));
        assert_eq!(table.template("/nowhere"), None);
    }

    #[test]
    fn path_parameters_are_named_as_the_document_names_them() {
        let table = table();
        assert_eq!(table.param_name("/api/videos/abc", 0), Some("video_id"));
        assert_eq!(table.param_name("/api/public/videos/x/vote", 0), Some("video_id"));
        assert_eq!(table.param_name("/api/public/videos/x/vote", 1), None);
    }
}
