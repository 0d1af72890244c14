//! Commands from clients on any partitioner and retried HTTP requests: one effect each.

#[path = "client_compat/gateway.rs"]
mod gateway;
