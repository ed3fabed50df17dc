//! The API reference page at `/api/v1/docs`, rendered in Rust from the OpenAPI document.
//!
//! Rendered on the server so the page needs no script, no CDN and no fonts: it is one
//! HTML file with one inline style block, allowed by its hash in the page's CSP. It
//! walks the document as JSON, so it shows exactly what `/api/v1/openapi.json` says.

use std::fmt::Write as _;

use serde_json::Value;

use super::error::ERROR_CODES;

pub struct Page {
    pub html: String,
    /// The page's `style-src`: the hash of its inline style.
    pub style_source: String,
}

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1d2127;--muted:#5b6470;--bg:#fff;--panel:#f4f6f8;--line:#d8dde3;--link:#0b5cad}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--muted:#a0a8b3;--bg:#14171b;--panel:#1d2228;--line:#323941;--link:#7ab4ff}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--panel);padding:1px 4px;border-radius:3px}
.layout{display:flex;align-items:flex-start}
nav{position:sticky;top:0;width:300px;flex:none;height:100vh;overflow:auto;padding:16px;border-right:1px solid var(--line);font-size:13px}
nav h2{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);margin:16px 0 4px}
nav ul{list-style:none;margin:0;padding:0}nav li{margin:2px 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
main{flex:1;min-width:0;padding:16px 32px 64px;max-width:1100px}
h1{margin:0 0 4px}h1 small{font-size:14px;color:var(--muted);font-weight:normal}
section>h2{border-bottom:1px solid var(--line);padding-bottom:4px;margin-top:40px}
article{border:1px solid var(--line);border-radius:6px;padding:12px 16px;margin:16px 0}
article h3{margin:0 0 6px;font-size:16px;word-break:break-all}
h4{margin:14px 0 4px;font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.method{display:inline-block;min-width:58px;text-align:center;font:bold 12px/20px ui-monospace,monospace;border-radius:3px;color:#fff;padding:0 4px;margin-right:6px}
.get{background:#1f7a3d}.post{background:#0b5cad}.put{background:#9a5b00}.delete{background:#b02a2a}
.summary{font-weight:600;margin:4px 0}.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%;font-size:14px;margin:4px 0}
th,td{text-align:left;vertical-align:top;border-bottom:1px solid var(--line);padding:4px 8px 4px 0}
th{font-size:12px;color:var(--muted);font-weight:600}
td.name{white-space:nowrap}
.desc p{margin:4px 0}.desc ul{margin:4px 0;padding-left:20px}
@media (max-width:800px){.layout{display:block}nav{position:static;width:auto;height:auto;border-right:0;border-bottom:1px solid var(--line)}main{padding:16px}}
";

/// The methods in the order the page lists them.
const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

/// Renders the page for `doc`, an OpenAPI document as JSON.
pub fn render(doc: &Value) -> Page {
    let title = text(doc, &["info", "title"]);
    let version = text(doc, &["info", "version"]);
    let mut body = String::new();
    let operations = operations(doc);

    let _ = write!(
        body,
        "<header><h1>{} API <small>version {} · OpenAPI {}</small></h1>",
        crate::html::escape(title),
        crate::html::escape(version),
        crate::html::escape(text(doc, &["openapi"])),
    );
    body.push_str(&markdown(text(doc, &["info", "description"])));
    body.push_str(
        "<p>Machine-readable: <a href=\"/api/v1/openapi.json\"><code>/api/v1/openapi.json</code></a></p></header>",
    );

    render_security(doc, &mut body);
    for (tag, description) in tags(doc) {
        let in_tag: Vec<_> = operations.iter().filter(|op| op.tag == tag).collect();
        if in_tag.is_empty() {
            continue;
        }
        let _ = write!(
            body,
            "<section id=\"tag-{}\"><h2>{}</h2>{}",
            crate::html::escape(&tag),
            crate::html::escape(&tag),
            markdown(&description)
        );
        for operation in in_tag {
            render_operation(doc, operation, &mut body);
        }
        body.push_str("</section>");
    }
    render_schemas(doc, &mut body);
    render_error_codes(&mut body);

    let nav = navigation(doc, &operations);
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} API</title><style>{STYLE}</style></head><body><div class=\"layout\">\
         {nav}<main>{body}</main></div></body></html>",
        crate::html::escape(title)
    );
    Page {
        html,
        style_source: crate::html::style_source(STYLE),
    }
}

/// A page that says the document could not be built (it never happens in practice:
/// serializing the document is infallible), so the route still answers something honest.
pub fn render_error(error: &str) -> Page {
    Page {
        html: format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>API</title>\
             <style>{STYLE}</style></head><body><main><p>The API document could not be \
             rendered: {}</p></main></body></html>",
            crate::html::escape(error)
        ),
        style_source: crate::html::style_source(STYLE),
    }
}

struct OperationRef<'a> {
    path: &'a str,
    method: &'static str,
    tag: String,
    operation: &'a Value,
}

impl OperationRef<'_> {
    fn anchor(&self) -> String {
        match self.operation.get("operationId").and_then(Value::as_str) {
            Some(id) => format!("op-{id}"),
            None => format!("op-{}-{}", self.method, self.path),
        }
    }
}

fn operations(doc: &Value) -> Vec<OperationRef<'_>> {
    let mut found = Vec::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return found;
    };
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                let tag = operation
                    .get("tags")
                    .and_then(|tags| tags.get(0))
                    .and_then(Value::as_str)
                    .unwrap_or("other")
                    .to_owned();
                found.push(OperationRef {
                    path,
                    method,
                    tag,
                    operation,
                });
            }
        }
    }
    found
}

/// The document's tags in its order, then any tag only operations name.
fn tags(doc: &Value) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = doc
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tag| {
            let name = tag.get("name")?.as_str()?.to_owned();
            let description = tag.get("description").and_then(Value::as_str);
            Some((name, description.unwrap_or_default().to_owned()))
        })
        .collect();
    for operation in operations(doc) {
        if !tags.iter().any(|(name, _)| *name == operation.tag) {
            tags.push((operation.tag, String::new()));
        }
    }
    tags
}

fn navigation(doc: &Value, operations: &[OperationRef<'_>]) -> String {
    let mut nav = String::from("<nav><strong>burnbox API</strong>");
    nav.push_str("<h2>General</h2><ul><li><a href=\"#authentication\">Authentication</a></li>");
    nav.push_str("<li><a href=\"#error-codes\">Error codes</a></li>");
    nav.push_str("<li><a href=\"#schemas\">Schemas</a></li></ul>");
    for (tag, _) in tags(doc) {
        let _ = write!(nav, "<h2>{}</h2><ul>", crate::html::escape(&tag));
        for operation in operations.iter().filter(|op| op.tag == tag) {
            let _ = write!(
                nav,
                "<li><a href=\"#{}\"><span class=\"method {}\">{}</span>{}</a></li>",
                crate::html::escape(&operation.anchor()),
                operation.method,
                operation.method.to_ascii_uppercase(),
                crate::html::escape(operation.path),
            );
        }
        nav.push_str("</ul>");
    }
    nav.push_str("</nav>");
    nav
}

fn render_security(doc: &Value, out: &mut String) {
    out.push_str("<section id=\"authentication\"><h2>Authentication</h2><table><tr><th>Scheme</th><th>Type</th><th>Description</th></tr>");
    let schemes = doc
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object);
    for (name, scheme) in schemes.into_iter().flatten() {
        let kind = [
            scheme.get("type").and_then(Value::as_str),
            scheme.get("scheme").and_then(Value::as_str),
            scheme.get("bearerFormat").and_then(Value::as_str),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let _ = write!(
            out,
            "<tr><td class=\"name\"><code>{}</code></td><td>{}</td><td class=\"desc\">{}</td></tr>",
            crate::html::escape(name),
            crate::html::escape(&kind),
            markdown(text(scheme, &["description"])),
        );
    }
    out.push_str("</table></section>");
}

fn render_operation(doc: &Value, op: &OperationRef<'_>, out: &mut String) {
    let operation = op.operation;
    let _ = write!(
        out,
        "<article id=\"{}\"><h3><span class=\"method {}\">{}</span><code>{}</code></h3>",
        crate::html::escape(&op.anchor()),
        op.method,
        op.method.to_ascii_uppercase(),
        crate::html::escape(op.path),
    );
    let summary = text(operation, &["summary"]);
    if !summary.is_empty() {
        let _ = write!(out, "<p class=\"summary\">{}</p>", inline(summary));
    }
    let description = text(operation, &["description"]);
    if !description.is_empty() {
        let _ = write!(out, "<div class=\"desc\">{}</div>", markdown(description));
    }
    let _ = write!(
        out,
        "<p><span class=\"muted\">Operation id</span> <code>{}</code> · <span class=\"muted\">Authentication</span> {}</p>",
        crate::html::escape(text(operation, &["operationId"])),
        security(operation),
    );

    let parameters: Vec<&Value> = operation
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if !parameters.is_empty() {
        out.push_str("<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th><th>Required</th><th>Description</th></tr>");
        for parameter in parameters {
            let parameter = resolve(doc, parameter);
            let _ = write!(
                out,
                "<tr><td class=\"name\"><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"desc\">{}</td></tr>",
                crate::html::escape(text(parameter, &["name"])),
                crate::html::escape(text(parameter, &["in"])),
                parameter
                    .get("schema")
                    .map(|schema| type_html(doc, schema))
                    .unwrap_or_default(),
                if parameter.get("required").and_then(Value::as_bool) == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                markdown(text(parameter, &["description"])),
            );
        }
        out.push_str("</table>");
    }

    if let Some(body) = operation.get("requestBody") {
        let body = resolve(doc, body);
        out.push_str("<h4>Request body</h4>");
        let description = text(body, &["description"]);
        if !description.is_empty() {
            let _ = write!(out, "<div class=\"desc\">{}</div>", markdown(description));
        }
        out.push_str("<table><tr><th>Content type</th><th>Schema</th></tr>");
        for (media_type, content) in body
            .get("content")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let _ = write!(
                out,
                "<tr><td class=\"name\"><code>{}</code></td><td>{}</td></tr>",
                crate::html::escape(media_type),
                content
                    .get("schema")
                    .map(|schema| type_html(doc, schema))
                    .unwrap_or_default(),
            );
        }
        out.push_str("</table>");
    }

    out.push_str(
        "<h4>Responses</h4><table><tr><th>Status</th><th>Description</th><th>Body</th></tr>",
    );
    for (status, response) in operation
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let response = resolve(doc, response);
        let mut bodies = Vec::new();
        for (media_type, content) in response
            .get("content")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let schema = content
                .get("schema")
                .map(|schema| type_html(doc, schema))
                .unwrap_or_default();
            bodies.push(format!(
                "<code>{}</code> {schema}",
                crate::html::escape(media_type)
            ));
        }
        let headers: Vec<String> = response
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, _)| format!("<code>{}</code>", crate::html::escape(name)))
            .collect();
        let mut description = markdown(text(response, &["description"]));
        if !headers.is_empty() {
            let _ = write!(
                description,
                "<p class=\"muted\">Headers: {}</p>",
                headers.join(", ")
            );
        }
        let _ = write!(
            out,
            "<tr><td class=\"name\"><strong>{}</strong></td><td class=\"desc\">{description}</td><td>{}</td></tr>",
            crate::html::escape(status),
            bodies.join("<br>"),
        );
    }
    out.push_str("</table></article>");
}

fn security(operation: &Value) -> String {
    let requirements: Vec<String> = operation
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .map(|requirement| {
            requirement
                .keys()
                .map(|name| {
                    format!(
                        "<a href=\"#authentication\"><code>{}</code></a>",
                        crate::html::escape(name)
                    )
                })
                .collect::<Vec<_>>()
                .join(" and ")
        })
        .filter(|requirement| !requirement.is_empty())
        .collect();
    if requirements.is_empty() {
        "none".to_owned()
    } else {
        requirements.join(" or ")
    }
}

fn render_schemas(doc: &Value, out: &mut String) {
    out.push_str("<section id=\"schemas\"><h2>Schemas</h2>");
    let schemas = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object);
    for (name, schema) in schemas.into_iter().flatten() {
        let _ = write!(
            out,
            "<article id=\"schema-{}\"><h3>{}</h3>",
            crate::html::escape(name),
            crate::html::escape(name)
        );
        let description = text(schema, &["description"]);
        if !description.is_empty() {
            let _ = write!(out, "<div class=\"desc\">{}</div>", markdown(description));
        }
        match schema.get("properties").and_then(Value::as_object) {
            Some(properties) => {
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                out.push_str("<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>");
                for (field, property) in properties {
                    let _ = write!(
                        out,
                        "<tr><td class=\"name\"><code>{}</code></td><td>{}</td><td>{}</td><td class=\"desc\">{}</td></tr>",
                        crate::html::escape(field),
                        type_html(doc, property),
                        if required.contains(&field.as_str()) {
                            "yes"
                        } else {
                            "no"
                        },
                        markdown(text(property, &["description"])),
                    );
                }
                out.push_str("</table>");
            }
            None => {
                let _ = write!(out, "<p>{}</p>", type_html(doc, schema));
            }
        }
        out.push_str("</article>");
    }
    out.push_str("</section>");
}

fn render_error_codes(out: &mut String) {
    out.push_str(
        "<section id=\"error-codes\"><h2>Error codes</h2><p>Every error is a \
         <a href=\"#schema-Problem\"><code>Problem</code></a> with one of these codes.</p>\
         <table><tr><th>Code</th><th>Status</th><th>Meaning</th></tr>",
    );
    for (code, status, meaning) in ERROR_CODES {
        let _ = write!(
            out,
            "<tr><td class=\"name\"><code>{}</code></td><td>{status}</td><td>{}</td></tr>",
            crate::html::escape(code),
            inline(meaning),
        );
    }
    out.push_str("</table></section>");
}

/// A short HTML description of a schema's type: links for references, constraints and
/// enumerations spelled out.
fn type_html(doc: &Value, schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return match reference.strip_prefix("#/components/schemas/") {
            Some(name) => format!("<a href=\"#schema-{0}\">{0}</a>", crate::html::escape(name)),
            None => format!("<code>{}</code>", crate::html::escape(reference)),
        };
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(variants) = schema.get(combinator).and_then(Value::as_array) {
            let separator = if combinator == "allOf" {
                " and "
            } else {
                " or "
            };
            return variants
                .iter()
                .map(|variant| type_html(doc, variant))
                .collect::<Vec<_>>()
                .join(separator);
        }
    }
    let mut label = match schema.get("type") {
        Some(Value::String(kind)) => single_type(doc, schema, kind),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .map(|kind| single_type(doc, schema, kind))
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_owned(),
    };
    let mut notes = Vec::new();
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        notes.push(crate::html::escape(format));
    }
    for (key, name) in [
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("pattern", "pattern"),
    ] {
        if let Some(value) = schema.get(key) {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            notes.push(format!(
                "{name} <code>{}</code>",
                crate::html::escape(&value)
            ));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|value| {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                format!("<code>{}</code>", crate::html::escape(&value))
            })
            .collect();
        notes.push(format!("one of {}", values.join(", ")));
    }
    if !notes.is_empty() {
        let _ = write!(
            label,
            " <span class=\"muted\">({})</span>",
            notes.join("; ")
        );
    }
    label
}

fn single_type(doc: &Value, schema: &Value, kind: &str) -> String {
    match (kind, schema.get("items")) {
        ("array", Some(items)) => format!("array of {}", type_html(doc, items)),
        _ => crate::html::escape(kind),
    }
}

/// Follows a local `$ref` (to a response, parameter or request body) to what it names.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    value
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix('#'))
        .and_then(|pointer| doc.pointer(pointer))
        .unwrap_or(value)
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut current = value;
    for key in path {
        match current.get(key) {
            Some(next) => current = next,
            None => return "",
        }
    }
    current.as_str().unwrap_or_default()
}

/// The Markdown the document's descriptions use: `code` spans, paragraphs and `- ` lists.
/// Anything else is shown as text; everything is escaped first.
fn markdown(text: &str) -> String {
    let mut html = String::new();
    for block in text.split("\n\n").map(str::trim).filter(|b| !b.is_empty()) {
        let lines: Vec<&str> = block.lines().map(str::trim).collect();
        if lines.iter().all(|line| line.starts_with("- ")) {
            html.push_str("<ul>");
            for line in lines {
                let item = line.strip_prefix("- ").unwrap_or(line);
                let _ = write!(html, "<li>{}</li>", inline(item));
            }
            html.push_str("</ul>");
        } else {
            let _ = write!(html, "<p>{}</p>", inline(&lines.join(" ")));
        }
    }
    html
}

fn inline(text: &str) -> String {
    let escaped = crate::html::escape(text);
    let mut html = String::with_capacity(escaped.len());
    let mut parts = escaped.split('`');
    if let Some(first) = parts.next() {
        html.push_str(first);
    }
    let mut open = false;
    for part in parts {
        html.push_str(if open { "</code>" } else { "<code>" });
        html.push_str(part);
        open = !open;
    }
    if open {
        html.push_str("</code>");
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_escaped_and_code_spans_rendered() {
        assert_eq!(
            markdown("a `<b>` & c\n\n- one\n- `two`"),
            "<p>a <code>&lt;b&gt;</code> &amp; c</p><ul><li>one</li><li><code>two</code></li></ul>"
        );
    }
}
