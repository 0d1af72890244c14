//! The OpenAPI 3.1 description of the edge, served at `/openapi.json`. It is written out by
//! hand next to the router; a unit test checks both list the same routes.

use serde_json::{Value, json};

fn error_ref() -> Value {
    json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn errors(codes: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (status, description) in codes {
        let mut response = error_ref();
        response["description"] = json!(description);
        out.insert((*status).to_owned(), response);
    }
    out
}

fn ok(status: &str, description: &str, schema: Value) -> (String, Value) {
    (
        status.to_owned(),
        json!({"description": description, "content": {"application/json": {"schema": schema}}}),
    )
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": "string", "maxLength": 64}})
}

fn min_version() -> Vec<Value> {
    vec![
        json!({"name": "min_version", "in": "query", "required": false,
               "description": "Wait (bounded) until the read model holds at least this version; 504 if it does not arrive.",
               "schema": {"type": "integer", "minimum": 1}}),
        json!({"name": "X-Min-Version", "in": "header", "required": false,
               "description": "Same as min_version.", "schema": {"type": "integer", "minimum": 1}}),
    ]
}

fn paging() -> Vec<Value> {
    vec![
        json!({"name": "limit", "in": "query", "required": false,
               "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}),
        json!({"name": "cursor", "in": "query", "required": false,
               "description": "next_cursor of the previous page", "schema": {"type": "string"}}),
    ]
}

fn command_headers() -> Vec<Value> {
    vec![
        json!({"name": "Idempotency-Key", "in": "header", "required": false,
               "description": "UUID used as the command id: a retry with the same key is never applied twice. The first use binds the key to the caller and the request (endpoint, addressed aggregate, If-Match, body) for idempotency_key_ttl_seconds (24 h by default), on every edge instance: a retry must repeat the request exactly; another caller's key, or the same key for another request, is refused with 422 idempotency_key_reused. POST /v1/orders without order_id derives the order id from the caller and the key, so every retry addresses the same order.",
               "schema": {"type": "string", "format": "uuid"}}),
        json!({"name": "If-Match", "in": "header", "required": false,
               "description": "Expected aggregate version, e.g. \"3\"; 409 when it differs.",
               "schema": {"type": "string"}}),
        json!({"name": "traceparent", "in": "header", "required": false,
               "description": "W3C trace context the command continues.", "schema": {"type": "string"}}),
    ]
}

fn read(summary: &str, params: Vec<Value>, schema: Value, secured: bool) -> Value {
    let mut responses = errors(&[
        ("400", "Malformed parameter"),
        ("404", "Not found (or not the caller's)"),
        ("503", "The read-model store is unavailable"),
        ("504", "min_version not reached in time"),
    ]);
    if secured {
        responses.extend(errors(&[
            ("401", "Missing or invalid token"),
            ("403", "Role not allowed"),
        ]));
    }
    let (k, v) = ok("200", "Found", schema);
    responses.insert(k, v);
    let mut op = json!({"summary": summary, "parameters": params, "responses": responses});
    if !secured {
        op["security"] = json!([]);
    }
    op
}

fn command(summary: &str, mut params: Vec<Value>, body: Option<&str>, created: bool) -> Value {
    params.extend(command_headers());
    let mut responses = errors(&[
        ("400", "Malformed body or header"),
        ("401", "Missing or invalid token"),
        ("403", "Role not allowed"),
        (
            "409",
            "If-Match did not match the aggregate's version (code concurrency.conflict)",
        ),
        ("413", "Body too large"),
        ("415", "The body is not application/json"),
        (
            "422",
            "Refused by the domain, with its code; or idempotency_key_reused: the \
             Idempotency-Key belongs to another caller or to another request",
        ),
        (
            "503",
            "Kafka, the registry or (for a request with an Idempotency-Key) the key store is \
             unavailable; retry with the same Idempotency-Key",
        ),
    ]);
    let reply = json!({"$ref": "#/components/schemas/CommandReply"});
    let (k, v) = ok(
        if created { "201" } else { "200" },
        "Applied (or a duplicate)",
        reply.clone(),
    );
    responses.insert(k, v);
    if created {
        let (k, v) = ok("200", "A duplicate of an applied command", reply.clone());
        responses.insert(k, v);
    }
    let (k, v) = ok(
        "202",
        "Produced; the result is late: poll the Location",
        reply,
    );
    responses.insert(k, v);
    let mut op = json!({"summary": summary, "parameters": params, "responses": responses});
    if let Some(schema) = body {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    op
}

fn schemas() -> Value {
    let money = json!({"type": "object", "additionalProperties": false, "required": ["amount_minor", "currency"],
        "properties": {"amount_minor": {"type": "integer", "minimum": 1, "maximum": 1_000_000_000_000_i64},
                       "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}}});
    let sku = json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"});
    json!({
        "Error": {"type": "object", "required": ["code", "message"],
                  "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
        "Money": money,
        "Product": {"type": "object", "properties": {
            "sku": sku, "name": {"type": "string"}, "category": {"type": "string"},
            "price_minor": {"type": "integer"}, "currency": {"type": "string"},
            "discontinued": {"type": "boolean"}, "version": {"type": "integer"},
            "updated_at": {"type": "integer", "description": "UTC milliseconds"}}},
        "Stock": {"type": "object", "properties": {
            "sku": sku, "received": {"type": "integer"}, "available": {"type": "integer"},
            "reserved": {"type": "integer"}, "sold": {"type": "integer"},
            "version": {"type": "integer"}, "updated_at": {"type": "integer"}}},
        "Order": {"type": "object", "properties": {
            "order_id": {"type": "string", "format": "uuid"}, "customer_id": {"type": "string"},
            "status": {"type": "string", "enum": ["placed", "reserving", "awaiting_payment", "confirmed", "cancelled", "expired"]},
            "reason": {"type": ["string", "null"]},
            "lines": {"type": "array", "items": {"type": "object", "properties": {
                "line_no": {"type": "integer"}, "sku": sku, "quantity": {"type": "integer"},
                "unit_price_minor": {"type": "integer"}}}},
            "total_minor": {"type": "integer"}, "currency": {"type": "string"},
            "placed_at": {"type": "integer"}, "updated_at": {"type": "integer"}, "version": {"type": "integer"}}},
        "ProductPage": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Product"}},
            "next_cursor": {"type": "string"}}},
        "OrderPage": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}},
            "next_cursor": {"type": "string"}}},
        "CommandReply": {"type": "object", "required": ["command_id", "aggregate_id", "status"], "properties": {
            "command_id": {"type": "string", "format": "uuid"}, "aggregate_id": {"type": "string"},
            "status": {"type": "string", "enum": ["accepted", "duplicate", "pending"]},
            "version": {"type": "integer"},
            "event_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}}}},
        "CreateProduct": {"type": "object", "additionalProperties": false,
            "required": ["sku", "name", "category", "price"], "properties": {
            "sku": sku, "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "category": {"type": "string", "minLength": 1, "maxLength": 100},
            "price": {"$ref": "#/components/schemas/Money"}}},
        "RenameProduct": {"type": "object", "additionalProperties": false, "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200}}},
        "ChangePrice": {"type": "object", "additionalProperties": false, "required": ["price"],
            "properties": {"price": {"$ref": "#/components/schemas/Money"}}},
        "ChangeCategory": {"type": "object", "additionalProperties": false, "required": ["category"],
            "properties": {"category": {"type": "string", "minLength": 1, "maxLength": 100}}},
        "ReceiveStock": {"type": "object", "additionalProperties": false, "required": ["quantity"],
            "properties": {"quantity": {"type": "integer", "minimum": 1, "maximum": 1_000_000}}},
        "PlaceOrder": {"type": "object", "additionalProperties": false, "required": ["lines", "card_token"],
            "properties": {
                "order_id": {"type": "string", "format": "uuid",
                    "description": "Chosen by the server when absent: derived from the caller and the Idempotency-Key when one is sent (the same on every retry), random otherwise."},
                "lines": {"type": "array", "minItems": 1, "maxItems": 50, "items": {
                    "type": "object", "additionalProperties": false, "required": ["sku", "quantity"],
                    "properties": {"sku": sku, "quantity": {"type": "integer", "minimum": 1, "maximum": 10_000}}}},
                "card_token": {"type": "string", "minLength": 1, "maxLength": 64},
                "deadline_seconds": {"type": "integer", "minimum": 5, "maximum": 604_800}}}
    })
}

/// The whole document.
pub fn document() -> Value {
    let sku = || path_param("sku", "Product key");
    let order_id = || path_param("order_id", "Order id (UUID)");
    let with = |first: Value, rest: Vec<Value>| {
        let mut all = vec![first];
        all.extend(rest);
        all
    };
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "streamcart", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Query API over the read models and command gateway over Kafka. Errors are {code, message}."},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": {"summary": "Dependency states", "security": [],
                "responses": {"200": {"description": "Serving"}, "503": {"description": "Neither store answers"}}}},
            "/metrics": {"get": {"summary": "Prometheus counters", "security": [],
                "responses": {"200": {"description": "Text exposition"}}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/v1/products": {"post": command("Create a product (catalog_admin)", vec![], Some("CreateProduct"), true)},
            "/v1/products/{sku}": {"get": read("A product: Redis first, ScyllaDB on a miss", with(sku(), min_version()), schema("Product"), false)},
            "/v1/products/{sku}/rename": {"post": command("Rename a product (catalog_admin)", vec![sku()], Some("RenameProduct"), false)},
            "/v1/products/{sku}/change-price": {"post": command("Reprice a product (catalog_admin)", vec![sku()], Some("ChangePrice"), false)},
            "/v1/products/{sku}/change-category": {"post": command("Move a product (catalog_admin)", vec![sku()], Some("ChangeCategory"), false)},
            "/v1/products/{sku}/discontinue": {"post": command("Discontinue a product (catalog_admin)", vec![sku()], None, false)},
            "/v1/categories/{category}/products": {"get": read("Products of a category, by sku",
                with(path_param("category", "Category"), paging()), schema("ProductPage"), false)},
            "/v1/stock/{sku}": {"get": read("Stock levels of a sku (any role)", with(sku(), min_version()), schema("Stock"), true)},
            "/v1/stock/{sku}/receive": {"post": command("Receive stock (catalog_admin)", vec![sku()], Some("ReceiveStock"), false)},
            "/v1/orders": {"post": command("Place an order for the calling customer (customer)", vec![], Some("PlaceOrder"), true)},
            "/v1/orders/{order_id}": {"get": read("An order (its customer, or operator)", with(order_id(), min_version()), schema("Order"), true)},
            "/v1/orders/{order_id}/cancel": {"post": command("Cancel an open order (its customer, or operator)", vec![order_id()], None, false)},
            "/v1/customers/{customer_id}/orders": {"get": read("A customer's orders, newest first (that customer, or operator)",
                with(path_param("customer_id", "Customer id"), paging()), schema("OrderPage"), true)},
            "/v1/commands/{command_id}": {"get": {
                "summary": "The result of a command answered 202 (its sender, on any edge instance)",
                "parameters": [path_param("command_id", "Command id (UUID)")],
                "responses": {
                    "200": {"description": "Applied", "content": {"application/json": {"schema": schema("CommandReply")}}},
                    "202": {"description": "Still pending", "content": {"application/json": {"schema": schema("CommandReply")}}},
                    "401": error_ref(), "404": error_ref(), "409": error_ref(), "422": error_ref(),
                    "503": error_ref()}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "HS256 or RS256; `sub` is the caller (the customer id for customers), `roles` lists catalog_admin, customer, operator."}},
            "schemas": schemas()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::ROUTES;
    use std::collections::BTreeSet;

    #[test]
    fn the_document_lists_exactly_the_routes() {
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let routed: BTreeSet<_> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(documented, routed);
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().expect("name");
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "missing schema {name}"
            );
        }
    }
}
