//! Versioned CQL migrations, recorded in `<keyspace>.schema_migrations`.
//!
//! Two scopes: `global` (tables shared by every generation) and one per generation (`g1`,
//! `g2`, ...), whose tables carry the generation as a name suffix so a rebuild can fill fresh
//! tables while readers keep using the old ones. A migration is applied once per scope and
//! recorded with a checksum of its text; released migrations are never edited (a changed
//! checksum is an error), new ones are appended with the next id.
//!
//! Every statement is `IF NOT EXISTS`, so two processes starting at once and both applying a
//! migration before either records it end up with the same schema.

use std::collections::HashMap;

use scylla::client::session::Session;

use super::error::StoreError;

/// One schema change; `cql` may use `{ks}` (keyspace) and `{g}` (generation suffix, `_g<n>`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub id: i32,
    pub name: &'static str,
    pub cql: &'static str,
}

/// Tables that live outside generations.
pub(crate) const GLOBAL: &[Migration] = &[
    Migration {
        id: 1,
        name: "projection_generations",
        cql: "CREATE TABLE IF NOT EXISTS {ks}.projection_generations (
                name text PRIMARY KEY,
                generation int,
                activated_at timestamp)",
    },
    Migration {
        id: 2,
        name: "order_line_type",
        cql: "CREATE TYPE IF NOT EXISTS {ks}.order_line (
                line_no bigint,
                sku text,
                quantity bigint,
                unit_price_minor bigint)",
    },
];

/// The read-model tables of one generation.
pub(crate) const GENERATION: &[Migration] = &[
    Migration {
        id: 1,
        name: "products_by_id",
        cql: "CREATE TABLE IF NOT EXISTS {ks}.products_by_id{g} (
                sku text PRIMARY KEY,
                name text,
                category text,
                price_minor bigint,
                currency text,
                discontinued boolean,
                version bigint,
                updated_at timestamp)",
    },
    Migration {
        id: 2,
        name: "products_by_category",
        cql: "CREATE TABLE IF NOT EXISTS {ks}.products_by_category{g} (
                category text,
                sku text,
                name text,
                price_minor bigint,
                currency text,
                discontinued boolean,
                version bigint,
                updated_at timestamp,
                PRIMARY KEY ((category), sku))
              WITH CLUSTERING ORDER BY (sku ASC)",
    },
    Migration {
        id: 3,
        name: "stock_by_sku",
        cql: "CREATE TABLE IF NOT EXISTS {ks}.stock_by_sku{g} (
                sku text PRIMARY KEY,
                received bigint,
                available bigint,
                reserved bigint,
                sold bigint,
                version bigint,
                updated_at timestamp)",
    },
    Migration {
        id: 4,
        name: "orders_by_id",
        cql: "CREATE TABLE IF NOT EXISTS {ks}.orders_by_id{g} (
                order_id text PRIMARY KEY,
                customer_id text,
                status text,
                reason text,
                lines frozen<list<frozen<order_line>>>,
                total_minor bigint,
                currency text,
                placed_at timestamp,
                updated_at timestamp,
                version bigint)",
    },
    // Both clustering columns descend so a `(placed_at, order_id) < (?, ?)` cursor walks the
    // partition in storage order (mixed-order tuple slices are not accepted everywhere).
    Migration {
        id: 5,
        name: "orders_by_customer",
        cql: "CREATE TABLE IF NOT EXISTS {ks}.orders_by_customer{g} (
                customer_id text,
                placed_at timestamp,
                order_id text,
                status text,
                reason text,
                lines frozen<list<frozen<order_line>>>,
                total_minor bigint,
                currency text,
                updated_at timestamp,
                version bigint,
                PRIMARY KEY ((customer_id), placed_at, order_id))
              WITH CLUSTERING ORDER BY (placed_at DESC, order_id DESC)",
    },
];

/// Scope name of a generation's migrations.
pub(crate) fn generation_scope(generation: u32) -> String {
    format!("g{generation}")
}

/// Table-name suffix of a generation.
pub(crate) fn generation_suffix(generation: u32) -> String {
    format!("_g{generation}")
}

/// The statement of `m` for a keyspace and suffix.
pub(crate) fn render(m: &Migration, keyspace: &str, suffix: &str) -> String {
    m.cql.replace("{ks}", keyspace).replace("{g}", suffix)
}

/// FNV-1a of the template, so the checksum is the same in every keyspace and generation.
pub(crate) fn checksum(m: &Migration) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in m.cql.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Creates the keyspace and the migrations ledger; these two cannot be recorded in a table that
/// does not exist yet, so they are plain `IF NOT EXISTS` statements run on every start.
pub(crate) async fn bootstrap(
    session: &Session,
    keyspace: &str,
    replication: &str,
) -> Result<(), StoreError> {
    session
        .query_unpaged(
            format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}"),
            &[],
        )
        .await?;
    session
        .query_unpaged(
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations (
                    scope text,
                    id int,
                    name text,
                    checksum bigint,
                    applied_at timestamp,
                    PRIMARY KEY ((scope), id))"
            ),
            &[],
        )
        .await?;
    Ok(())
}

/// The keyspace's `replication` map, as the cluster holds it.
pub(crate) async fn keyspace_replication(
    session: &Session,
    keyspace: &str,
) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
    let rows = session
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await?
        .into_rows_result()
        .map_err(|e| StoreError::decode("system_schema.keyspaces", e))?;
    let (replication,) = rows
        .single_row::<(std::collections::BTreeMap<String, String>,)>()
        .map_err(|e| StoreError::decode("system_schema.keyspaces", e))?;
    Ok(replication)
}

/// Ids and checksums of the migrations already applied in `scope`.
pub(crate) async fn applied(
    session: &Session,
    keyspace: &str,
    scope: &str,
) -> Result<HashMap<i32, i64>, StoreError> {
    let rows = session
        .query_unpaged(
            format!("SELECT id, checksum FROM {keyspace}.schema_migrations WHERE scope = ?"),
            (scope,),
        )
        .await?
        .into_rows_result()
        .map_err(|e| StoreError::decode("schema_migrations", e))?;
    let mut out = HashMap::new();
    for row in rows
        .rows::<(i32, i64)>()
        .map_err(|e| StoreError::decode("schema_migrations", e))?
    {
        let (id, sum) = row.map_err(|e| StoreError::decode("schema_migrations", e))?;
        out.insert(id, sum);
    }
    Ok(out)
}

/// Applies the migrations of `scope` not applied yet, in id order; returns the ids applied now.
pub(crate) async fn migrate(
    session: &Session,
    keyspace: &str,
    scope: &str,
    suffix: &str,
    migrations: &[Migration],
) -> Result<Vec<i32>, StoreError> {
    let done = applied(session, keyspace, scope).await?;
    let mut now = Vec::new();
    for m in migrations {
        let expected = checksum(m);
        if let Some(&recorded) = done.get(&m.id) {
            if recorded != expected {
                return Err(StoreError::MigrationChanged {
                    scope: scope.to_owned(),
                    id: m.id,
                    name: m.name,
                    applied: recorded,
                    expected,
                });
            }
            continue;
        }
        session
            .query_unpaged(render(m, keyspace, suffix), &[])
            .await?;
        // Recorded only after the change succeeded, so a crash in between re-runs an
        // `IF NOT EXISTS` statement rather than skipping a change.
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {keyspace}.schema_migrations (scope, id, name, checksum, applied_at)
                     VALUES (?, ?, ?, ?, toTimestamp(now()))"
                ),
                (scope, m.id, m.name, expected),
            )
            .await?;
        tracing::info!(
            keyspace,
            scope,
            id = m.id,
            name = m.name,
            "migration applied"
        );
        now.push(m.id);
    }
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_ids_are_increasing_and_unique() {
        for list in [GLOBAL, GENERATION] {
            let ids: Vec<i32> = list.iter().map(|m| m.id).collect();
            let expected: Vec<i32> = (1..).take(ids.len()).collect();
            assert_eq!(ids, expected);
        }
    }

    #[test]
    fn rendering_fills_keyspace_and_generation() {
        let cql = render(&GENERATION[0], "ks", &generation_suffix(3));
        assert!(cql.contains("ks.products_by_id_g3 ("), "{cql}");
        assert!(!cql.contains("{ks}") && !cql.contains("{g}"), "{cql}");
    }

    #[test]
    fn checksums_depend_on_the_text_only() {
        assert_eq!(checksum(&GENERATION[0]), checksum(&GENERATION[0]));
        assert_ne!(checksum(&GENERATION[0]), checksum(&GENERATION[1]));
    }
}
