-- The registry keeps its schemas in its own database when run under Docker Compose.
CREATE DATABASE registry;
