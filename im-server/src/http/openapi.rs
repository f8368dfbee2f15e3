//! The API document (OpenAPI 3.1), generated from the handlers: each
//! handler's `#[utoipa::path]` names its route, parameters, body and
//! answers, and the request and answer types are its schemas. The server
//! serves it at `GET /openapi.json`; docs/openapi.json is a copy a test keeps
//! equal to it, and another test checks that it lists exactly the routes
//! the router serves.
//!
//! What every route shares is added here rather than on each handler: the
//! error answers for a missing or wrong credential (401, 403), a bad
//! request (400), a body too large or of the wrong type (413, 415), a slow
//! client (408) and an unavailable or failing store (503, 500).

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{HttpOptions, admin, devices, files, push, user};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "imkit HTTP API",
        description = "Accounts and tokens, contacts, groups, conversations and history, \
            server-side sends and notifications, devices, push registration and files. \
            Admin routes take `Authorization: Bearer <admin key>`; user routes take \
            `Authorization: Bearer <login token>` and act as that user (device `http`). \
            Errors are `{\"error\": {\"code\", \"name\", \"message\"}}` with the \
            protocol's error codes (docs/protocol.md).",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        super::health,
        super::healthz,
        super::ready,
        super::readyz,
        super::openapi,
        admin::create_user,
        admin::get_user,
        admin::disable_user,
        admin::enable_user,
        admin::issue_token,
        admin::force_logout,
        admin::presence,
        devices::user_devices,
        devices::remove_user_device,
        admin::revoke_token,
        admin::create_group,
        admin::add_members,
        admin::remove_member,
        admin::send_message,
        admin::notify,
        user::me,
        devices::my_devices,
        user::privacy,
        user::set_privacy,
        devices::remove_my_device,
        push::set_token,
        push::remove_token,
        push::set_settings,
        user::contacts,
        user::friend_request,
        user::friend_accept,
        user::friend_remove,
        user::block,
        user::unblock,
        user::groups,
        user::create_group,
        user::group_members,
        user::conversations,
        user::history,
        files::upload,
        files::download,
    ),
    tags(
        (name = "health", description = "Liveness, readiness and this document"),
        (name = "admin", description = "The application's backend: the admin key"),
        (name = "user", description = "A logged-in user: their login token"),
        (name = "files", description = "Files: a user's token or the admin key"),
    ),
    modifiers(&Shared),
)]
struct ApiDoc;

/// The document of a server with default options, as pretty JSON, built
/// once (docs/openapi.json is a copy of it).
#[cfg(test)]
fn document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| document_for(&HttpOptions::default()))
}

/// The document of a server with `options`: the limits it states are that
/// server's (the longest token lifetime, the file size and types).
pub(crate) fn document_for(options: &HttpOptions) -> String {
    let mut doc = ApiDoc::openapi();
    state_limits(&mut doc, options);
    let mut text = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"the API document: {e}\"}}"));
    text.push('\n');
    text
}

/// The API document, as JSON text, of a server with `options`: what its
/// `GET /openapi.json` serves.
pub fn openapi_json(options: &HttpOptions) -> String {
    document_for(options)
}

/// Writes a server's own limits where the document states limits.
fn state_limits(doc: &mut Document, options: &HttpOptions) {
    use utoipa::openapi::schema::Schema;
    if let Some(RefOr::T(Schema::Object(issue))) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("IssueToken"))
        && let Some(RefOr::T(Schema::Object(ttl))) = issue.properties.get_mut("ttl_secs")
    {
        let max = usize::try_from(options.max_token_ttl_secs).unwrap_or(usize::MAX);
        ttl.maximum = Some(utoipa::Number::UInt(max));
        ttl.description = Some(format!(
            "Seconds, 1 to {} on this server; absent or `null`: {}.",
            options.max_token_ttl_secs, options.default_token_ttl_secs
        ));
    }
    if let Some(op) = doc
        .paths
        .paths
        .get_mut("/v1/files")
        .and_then(|item| item.post.as_mut())
    {
        let responses = &mut op.responses.responses;
        if let Some(RefOr::T(r)) = responses.get_mut("413") {
            r.description = format!("Larger than {} bytes", options.max_file_bytes);
        }
        if let Some(RefOr::T(r)) = responses.get_mut("415") {
            r.description = if options.allowed_file_types.is_empty() {
                "A content type the server does not accept (this one accepts any)".into()
            } else {
                format!(
                    "A content type other than {}",
                    options.allowed_file_types.join(", ")
                )
            };
        }
    }
}

/// The security schemes, the shared error answers, and links between
/// operations (so a client, or a contract tester, can follow a created
/// user or group to the routes that take it).
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "adminKey",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        let mut token = Http::new(HttpAuthScheme::Bearer);
        token.bearer_format = Some("JWT".into());
        components.add_security_scheme("userToken", SecurityScheme::Http(token));
        components.responses.insert(
            "Error".into(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("An error: `{\"error\": {\"code\", \"name\", \"message\"}}`")
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                    )
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                add_errors(op);
            }
        }
        add_links(doc);
        split_file_variant(doc);
        close_variants(doc, "ContentIn");
        // Exactly one way of naming the recipient, or the token.
        one_of(
            doc,
            "SendMessage",
            &[(&["to_user"], &["to_group"]), (&["to_group"], &["to_user"])],
        );
        one_of(
            doc,
            "RevokeToken",
            &[
                (&["token"], &["jti", "user_id"]),
                (&["jti", "user_id"], &["token"]),
            ],
        );
        binary_bodies(doc);
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn add_errors(op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let takes_input =
        op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some();
    let json_body = op.request_body.as_ref().is_some_and(is_json);
    let mut shared: Vec<&str> = Vec::new();
    if takes_input {
        shared.push("400");
    }
    if secured {
        shared.extend(["401", "403"]);
    }
    shared.push("408");
    if json_body {
        shared.extend(["413", "415"]);
    }
    shared.extend(["500", "503"]);
    let responses = &mut op.responses.responses;
    for status in shared {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Error")));
    }
}

/// Marks each variant of a tagged enum that refuses unknown fields as
/// closed (the derive marks only structs).
fn close_variants(doc: &mut Document, name: &str) {
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) else {
        return;
    };
    for variant in &mut one_of.items {
        if let RefOr::T(Schema::Object(object)) = variant {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
}

/// A file is stored here (`blob_id`) or elsewhere (`url`, with a name):
/// the `file` variant of `ContentIn` becomes one variant for each.
fn split_file_variant(doc: &mut Document) {
    use utoipa::openapi::schema::Schema;
    let Some(RefOr::T(Schema::OneOf(content))) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("ContentIn"))
    else {
        return;
    };
    let is_file = |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.properties.contains_key("blob_id"));
    let Some(at) = content.items.iter().position(is_file) else {
        return;
    };
    let RefOr::T(Schema::Object(file)) = content.items.remove(at) else {
        return;
    };
    let variants = exclusive(
        &file,
        &[(&["blob_id"], &["url"]), (&["url", "name"], &["blob_id"])],
    );
    for (i, v) in variants.into_iter().enumerate() {
        content.items.insert(at + i, RefOr::T(Schema::Object(v)));
    }
}

/// Copies of an object schema: in each, the first fields are required and
/// not null, the second must be absent or null.
fn exclusive(
    base: &utoipa::openapi::schema::Object,
    variants: &[(&[&str], &[&str])],
) -> Vec<utoipa::openapi::schema::Object> {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    variants
        .iter()
        .map(|(present, absent)| {
            let mut object = base.clone();
            object.example = None;
            for field in present.iter() {
                if let Some(schema) = object.properties.get_mut(*field) {
                    *schema = not_null(schema.clone());
                }
                if !object.required.iter().any(|r| r == field) {
                    object.required.push((*field).to_owned());
                }
            }
            for field in absent.iter() {
                object.properties.insert(
                    (*field).to_owned(),
                    RefOr::T(Schema::Object(
                        ObjectBuilder::new().schema_type(Type::Null).build(),
                    )),
                );
            }
            object
        })
        .collect()
}

/// Replaces an object schema by a `oneOf` of copies: in each, the first
/// fields are required and not null, the second must be absent or null.
fn one_of(doc: &mut Document, name: &str, variants: &[(&[&str], &[&str])]) {
    use utoipa::openapi::schema::{OneOfBuilder, Schema};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let Some(RefOr::T(Schema::Object(base))) = components.schemas.get(name).cloned() else {
        return;
    };
    let mut one_of = OneOfBuilder::new()
        .description(base.description.clone())
        .examples(base.example.clone());
    for mut object in exclusive(&base, variants) {
        object.description = None;
        one_of = one_of.item(Schema::Object(object));
    }
    components
        .schemas
        .insert(name.to_owned(), RefOr::T(Schema::OneOf(one_of.build())));
}

/// A property's schema without its `null` alternative.
fn not_null(
    schema: RefOr<utoipa::openapi::schema::Schema>,
) -> RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{Schema, SchemaType, Type};
    match schema {
        RefOr::T(Schema::OneOf(o)) => o
            .items
            .into_iter()
            .find(|i| !matches!(i, RefOr::T(Schema::Object(x)) if x.schema_type == SchemaType::Type(Type::Null)))
            .unwrap_or_else(|| RefOr::T(Schema::default())),
        RefOr::T(Schema::Object(mut x)) => {
            if let SchemaType::Array(types) = &x.schema_type {
                let kept: Vec<Type> = types.iter().filter(|t| **t != Type::Null).cloned().collect();
                x.schema_type = match kept.as_slice() {
                    [one] => SchemaType::Type(one.clone()),
                    _ => SchemaType::Array(kept),
                };
            }
            RefOr::T(Schema::Object(x))
        }
        other => other,
    }
}

/// File bodies: uploads take any media type (kept as the file's type),
/// and downloads answer with the file's own type.
fn binary_bodies(doc: &mut Document) {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    let bytes = |min: Option<usize>| {
        Content::new(Some(RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/octet-stream")
                .min_length(min)
                .build(),
        ))))
    };
    if let Some(item) = doc.paths.paths.get_mut("/v1/files")
        && let Some(RefOr::T(body)) = item.post.as_mut().and_then(|op| op.request_body.as_mut())
    {
        body.content.clear();
        body.content
            .insert("application/octet-stream".into(), RefOr::T(bytes(Some(1))));
    }
    if let Some(item) = doc.paths.paths.get_mut("/v1/files/{file_id}")
        && let Some(op) = item.get.as_mut()
    {
        for status in ["200", "206"] {
            if let Some(RefOr::T(r)) = op.responses.responses.get_mut(status) {
                r.content.clear();
                r.content.insert("*/*".into(), RefOr::T(bytes(None)));
            }
        }
    }
}

fn is_json(body: &RefOr<RequestBody>) -> bool {
    matches!(body, RefOr::T(b) if b.content.contains_key("application/json"))
}

/// (from operation, its status, link name, to operation, parameter, where
/// in the answer).
const LINKS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "create_user",
        "201",
        "GetUser",
        "get_user",
        "user_id",
        "$response.body#/user_id",
    ),
    (
        "create_user",
        "201",
        "IssueToken",
        "issue_token",
        "user_id",
        "$response.body#/user_id",
    ),
    (
        "create_user",
        "201",
        "DisableUser",
        "disable_user",
        "user_id",
        "$response.body#/user_id",
    ),
    (
        "create_user",
        "201",
        "EnableUser",
        "enable_user",
        "user_id",
        "$response.body#/user_id",
    ),
    (
        "create_user",
        "201",
        "Presence",
        "presence",
        "user_id",
        "$response.body#/user_id",
    ),
    (
        "create_user",
        "201",
        "Devices",
        "user_devices",
        "user_id",
        "$response.body#/user_id",
    ),
    (
        "create_user",
        "201",
        "Logout",
        "force_logout",
        "user_id",
        "$response.body#/user_id",
    ),
    (
        "admin_create_group",
        "201",
        "AddMembers",
        "add_members",
        "group_id",
        "$response.body#/group_id",
    ),
    (
        "admin_create_group",
        "201",
        "RemoveMember",
        "remove_member",
        "group_id",
        "$response.body#/group_id",
    ),
    (
        "create_group",
        "201",
        "Members",
        "group_members",
        "group_id",
        "$response.body#/group_id",
    ),
    (
        "send_message",
        "200",
        "History",
        "history",
        "conversation_id",
        "$response.body#/conversation_id",
    ),
    (
        "upload",
        "201",
        "Download",
        "download",
        "file_id",
        "$response.body#/file_id",
    ),
];

fn add_links(doc: &mut Document) {
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            let Some(id) = op.operation_id.as_deref() else {
                continue;
            };
            for (_, status, name, to, param, at) in LINKS.iter().filter(|l| l.0 == id) {
                let Some(RefOr::T(response)) = op.responses.responses.get_mut(*status) else {
                    continue;
                };
                response.links.insert(
                    (*name).to_owned(),
                    RefOr::T(
                        LinkBuilder::new()
                            .operation_id(*to)
                            .parameter(*param, *at)
                            .build(),
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    fn document() -> Value {
        serde_json::from_str(super::document()).expect("the document is JSON")
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc = document();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("a path item")
                    .keys()
                    .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = super::super::routes().into_iter().collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn a_server_states_its_own_limits() {
        let options = super::HttpOptions {
            max_token_ttl_secs: 3_600,
            max_file_bytes: 1_000,
            allowed_file_types: vec!["image/*".into()],
            ..super::HttpOptions::default()
        };
        let doc: Value = serde_json::from_str(&super::document_for(&options)).expect("JSON");
        let ttl = &doc["components"]["schemas"]["IssueToken"]["properties"]["ttl_secs"];
        assert_eq!(ttl["maximum"], 3_600, "{ttl}");
        let upload = &doc["paths"]["/v1/files"]["post"]["responses"];
        assert!(
            upload["413"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("1000"))
        );
        assert!(
            upload["415"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("image/*"))
        );
        let default = &document()["components"]["schemas"]["IssueToken"]["properties"];
        assert_eq!(
            default["ttl_secs"]["maximum"], 2_592_000,
            "the default is 30 days"
        );
    }

    /// docs/openapi.json is the document, for readers of the repository.
    /// `IMKIT_WRITE_OPENAPI=1 cargo test -p imkit-server docs_copy` rewrites it.
    #[test]
    fn docs_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        if std::env::var_os("IMKIT_WRITE_OPENAPI").is_some() {
            std::fs::write(path, super::document()).expect("write docs/openapi.json");
        }
        let copy = std::fs::read_to_string(path).expect("docs/openapi.json");
        assert!(
            copy == super::document(),
            "docs/openapi.json is stale: run IMKIT_WRITE_OPENAPI=1 cargo test -p imkit-server docs_copy"
        );
    }

    #[test]
    fn operation_ids_are_unique_and_links_name_real_operations() {
        let doc = document();
        let mut ids = BTreeSet::new();
        let mut links = Vec::new();
        for item in doc["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("item").values() {
                let id = op["operationId"].as_str().expect("an operationId");
                assert!(ids.insert(id.to_owned()), "{id} twice");
                let summary = op["summary"].as_str().unwrap_or_default();
                assert!(
                    !summary.is_empty() && !summary.contains('\n'),
                    "{id}: a one-line summary, not {summary:?}"
                );
                for response in op["responses"].as_object().expect("responses").values() {
                    if let Some(l) = response.get("links").and_then(Value::as_object) {
                        links.extend(l.values().map(|l| l["operationId"].clone()));
                    }
                }
            }
        }
        assert!(links.len() >= 10, "{links:?}");
        for l in links {
            assert!(ids.contains(l.as_str().expect("an id")), "{l}");
        }
    }

    #[test]
    fn every_parameter_has_an_example() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let named = p["schema"]["$ref"]
                        .as_str()
                        .and_then(|r| r.rsplit('/').next())
                        .map(|n| &schemas[n]);
                    let has = p.get("example").is_some()
                        || p["schema"].get("examples").is_some()
                        || named.is_some_and(|s| s.get("examples").is_some());
                    assert!(has, "{method} {path}: {} has no example", p["name"]);
                    checked += 1;
                }
            }
        }
        assert!(checked >= 30, "{checked}");
    }

    #[test]
    fn every_request_body_has_an_example_and_refuses_unknown_fields() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let Some(json) = op.pointer("/requestBody/content/application~1json") else {
                    continue;
                };
                let schema = &json["schema"];
                let name = schema["$ref"]
                    .as_str()
                    .or_else(|| schema.pointer("/oneOf/0/$ref").and_then(Value::as_str))
                    .and_then(|r| r.rsplit('/').next())
                    .unwrap_or_else(|| panic!("{method} {path}: a named schema"));
                let body = &schemas[name];
                assert!(
                    body.get("example").is_some() || body.get("examples").is_some(),
                    "{method} {path}: an example"
                );
                let closed = match body.get("oneOf").and_then(Value::as_array) {
                    Some(variants) => variants.iter().all(|v| v["additionalProperties"] == false),
                    None => body["additionalProperties"] == false,
                };
                assert!(closed, "{method} {path}: unknown fields are refused");
                checked += 1;
            }
        }
        assert!(checked >= 14, "{checked}");
    }
}
