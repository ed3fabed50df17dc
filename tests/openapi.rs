//! The OpenAPI document and the docs page: every route documented and served, the
//! document structurally valid, the page self-contained.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use burnbox::http::{ERROR_CODES, ROUTES};
use common::*;
use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn fetch_document(server: &TestServer) -> Value {
    let response = server.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let cache = response.headers()["cache-control"].to_str().unwrap();
    assert!(cache.contains("max-age"), "cacheable briefly: {cache}");
    response.json().await.unwrap()
}

/// Every operation of the document: (METHOD, path, operation).
fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_ascii_uppercase(), path.clone(), operation));
            }
        }
    }
    found
}

/// Every `$ref` anywhere under `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    out.push(child.as_str().expect("$ref is a string"));
                } else {
                    refs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => document
            .pointer(reference.strip_prefix('#').unwrap())
            .unwrap(),
        None => value,
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_has_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let document = fetch_document(&server).await;

    let version = document["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1"), "openapi is {version}");
    assert_eq!(document["info"]["title"], "burnbox");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));

    for (method, path) in ROUTES {
        assert!(
            document["paths"][path]
                .get(method.to_ascii_lowercase())
                .is_some(),
            "{method} {path} is not in the document"
        );
    }
    assert_eq!(
        operations(&document).len(),
        ROUTES.len(),
        "no extra operations"
    );

    // What is served is what the library generates.
    assert_eq!(
        document,
        serde_json::to_value(burnbox::http::openapi()).unwrap()
    );
    server.stop().await;
}

#[tokio::test]
async fn the_document_is_structurally_valid() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let document = fetch_document(&server).await;

    // Every reference resolves inside the document.
    let mut all_refs = Vec::new();
    refs(&document, &mut all_refs);
    assert!(!all_refs.is_empty());
    for reference in all_refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} is not local"));
        assert!(
            document.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }

    let schemes = document["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    assert_eq!(schemes["basic"]["type"], "http");
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");

    let tags: BTreeSet<&str> = document["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag["name"].as_str().unwrap())
        .collect();
    let codes: BTreeSet<&str> = ERROR_CODES.iter().map(|(code, _, _)| *code).collect();
    let mut operation_ids = BTreeSet::new();
    for (method, path, operation) in operations(&document) {
        let at = format!("{method} {path}");
        let id = operation["operationId"].as_str().expect(&at);
        assert!(
            operation_ids.insert(id.to_owned()),
            "{at}: operationId {id} repeats"
        );
        assert!(
            !operation["summary"].as_str().unwrap_or_default().is_empty(),
            "{at}: no summary"
        );
        for tag in operation["tags"].as_array().expect(&at) {
            assert!(
                tags.contains(tag.as_str().unwrap()),
                "{at}: undeclared tag {tag}"
            );
        }

        // Path parameters: each one in the template is declared, required, and vice versa.
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let mut declared = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let parameter = resolve(&document, parameter);
            let name = parameter["name"].as_str().expect(&at);
            let location = parameter["in"].as_str().expect(&at);
            assert!(
                ["path", "query", "header", "cookie"].contains(&location),
                "{at}: {name} is in {location}"
            );
            assert!(seen.insert((name, location)), "{at}: {name} declared twice");
            assert!(
                parameter.get("schema").is_some(),
                "{at}: {name} has no schema"
            );
            if location == "path" {
                assert_eq!(
                    parameter["required"], true,
                    "{at}: path {name} not required"
                );
                declared.insert(name);
            }
        }
        assert_eq!(declared, in_template, "{at}: path parameters");

        // Responses: at least one, each described; problems name their codes.
        let responses = operation["responses"].as_object().expect(&at);
        assert!(!responses.is_empty(), "{at}: no responses");
        assert!(
            // 101: a WebSocket upgrade succeeds by switching protocols.
            responses
                .keys()
                .any(|status| status.starts_with('2') || status == "101"),
            "{at}: no success response"
        );
        for (status, response) in responses {
            let response = resolve(&document, response);
            let description = response["description"].as_str().unwrap_or_default();
            assert!(!description.is_empty(), "{at} {status}: no description");
            let Some(content) = response["content"].as_object() else {
                continue;
            };
            for (media_type, media) in content {
                assert!(
                    media.get("schema").is_some(),
                    "{at} {status} {media_type}: no schema"
                );
            }
            if let Some(problem) = content.get("application/problem+json") {
                assert_eq!(problem["schema"]["$ref"], "#/components/schemas/Problem");
                // The convention: "`code`: when it happens; `other_code`: ...".
                let named: Vec<&str> = description
                    .split('`')
                    .collect::<Vec<_>>()
                    .windows(2)
                    // Odd pieces are inside backticks; each pair is (token, what follows).
                    .skip(1)
                    .step_by(2)
                    .filter_map(|pair| pair[1].starts_with(':').then_some(pair[0]))
                    .collect();
                assert!(!named.is_empty(), "{at} {status}: names no error code");
                for code in named {
                    let published = ERROR_CODES
                        .iter()
                        .find(|(c, _, _)| *c == code)
                        .unwrap_or_else(|| panic!("{at} {status}: `{code}` is no error code"));
                    assert_eq!(
                        published.1.to_string(),
                        *status,
                        "{at}: `{code}` under the wrong status"
                    );
                }
            }
        }
        assert!(responses.contains_key("500"), "{at}: no 500");

        // Security: named schemes only; public operations are exactly these.
        let security = operation["security"].as_array();
        for requirement in security.into_iter().flatten() {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(
                    schemes.contains_key(scheme),
                    "{at}: unknown scheme {scheme}"
                );
            }
        }
        let public = security.is_none_or(|requirements| requirements.is_empty());
        let meant_public = path.starts_with("/webhooks/")
            || [
                "/healthz",
                "/readyz",
                "/api/v1/openapi.json",
                "/api/v1/docs",
            ]
            .contains(&path.as_str())
            || [
                "/api/v1/auth/login",
                "/api/v1/auth/refresh",
                "/api/v1/auth/guest",
                "/api/v1/auth/register",
                "/api/v1/auth/verify-email",
                "/api/v1/auth/password-reset",
                "/api/v1/auth/password-reset/confirm",
            ]
            .contains(&path.as_str());
        assert_eq!(public, meant_public, "{at}: security");
        if !public {
            assert!(responses.contains_key("401"), "{at}: no 401");
        }
    }

    // The problem schema lists every code, from the same list the server answers with.
    let problem = &document["components"]["schemas"]["Problem"];
    let listed: BTreeSet<&str> = problem["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    assert_eq!(listed, codes);
    for field in ["type", "title", "status", "detail", "code"] {
        assert!(
            problem["required"]
                .as_array()
                .unwrap()
                .contains(&Value::from(field)),
            "Problem.{field} is required"
        );
    }

    // The JSON types of the API are named schemas.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for name in [
        "MessageJson",
        "MessagesJson",
        "NumberJson",
        "NumberAdminJson",
        "NumbersJson",
        "LeaseJson",
        "LeasesJson",
        "NewLease",
        "Extension",
        "NewNumber",
        "NumberUpdate",
        "NewUser",
        "UserJson",
        "RoleJson",
        "TokensJson",
        "UserRef",
        "Login",
        "Refresh",
        "Problem",
        "NewMessage",
        "QueuedJson",
        "OutboundJson",
        "NewProvider",
        "ProviderJson",
        "ProvidersJson",
    ] {
        assert!(schemas.contains_key(name), "schema {name} is missing");
    }
    server.stop().await;
}

/// Turns a path template into a concrete path the router matches.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{provider}" => "no-such-provider",
            s if s.starts_with('{') => "999999",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_server_answers_every_documented_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut answers = BTreeMap::new();
    for (method, path) in ROUTES {
        let url = server.url(&concrete(path));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = server
            .client
            .request(method.clone(), url)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // The router's own answers for a route it does not have.
        assert_ne!(status, 405, "{method} {path} is not routed: {body}");
        let unrouted = status == 404
            && body["code"] == "not_found"
            && body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("this route");
        assert!(!unrouted, "{method} {path} is not routed");
        answers.insert(format!("{method} {path}"), status);
    }
    // Spot checks that the requests reached their handlers.
    assert_eq!(answers["GET /healthz"], 200);
    assert_eq!(answers["GET /api/v1/numbers"], 401);
    assert_eq!(answers["POST /webhooks/{provider}"], 404);
    assert_eq!(answers["GET /api/v1/docs"], 200);
    server.stop().await;
}

#[tokio::test]
async fn the_docs_page_is_self_contained_and_lists_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let response = server.get("/api/v1/docs").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("style-src 'sha256-"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    let html = response.text().await.unwrap();

    for (method, path) in ROUTES {
        assert!(
            html.contains(&format!("<code>{path}</code>")),
            "{path} is not on the page"
        );
        let badge = format!(">{method}</span><code>{path}</code>");
        assert!(html.contains(&badge), "{method} {path} is not on the page");
    }
    for (code, _, _) in ERROR_CODES {
        assert!(
            html.contains(&format!("<code>{code}</code>")),
            "{code} is not on the page"
        );
    }
    for schema in ["TokensJson", "MessageJson", "Problem", "LeaseJson"] {
        assert!(
            html.contains(&format!("id=\"schema-{schema}\"")),
            "{schema} is not on the page"
        );
    }

    // Nothing is loaded from elsewhere: no absolute URLs, no scripts, no external sheets.
    assert!(!html.contains("http://"), "the page names an http:// URL");
    assert!(!html.contains("https://"), "the page names an https:// URL");
    assert!(!html.contains("//cdn"), "the page names a CDN");
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "the page has a script"
    );
    assert!(
        !html.to_ascii_lowercase().contains("<link"),
        "the page links a resource"
    );
    assert!(!html.contains(" src="), "the page loads a resource");

    assert_only_its_own_style_is_allowed(&html, csp);
    server.stop().await;
}

#[tokio::test]
async fn a_path_segment_that_does_not_parse_is_a_problem_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let response = server
        .client
        .get(server.url("/api/v1/numbers/not-a-number"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (problem["code"].as_str(), problem["field"].as_str()),
        (Some("validation_failed"), Some("path"))
    );
    server.stop().await;
}
