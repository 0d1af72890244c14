//! A flash sale on the real stack: one hot SKU with 100 units, 2,000 orders from 500 customers,
//! some declined, some expiring, while every processor and saga role is SIGKILLed and restarted
//! at random. When everything has settled, the invariants are checked from the event topics.
//! It runs with the saga's reactions in their own loop, and again with them inline in the
//! command processors (`saga.reactions`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::IndexedRandom;
use streamcart_aggregates::catalog::ProductEvent;
use streamcart_aggregates::inventory::StockEvent;
use streamcart_aggregates::orders::{OrderEvent, OrderLineRequest, PlaceOrder};
use streamcart_aggregates::payments::PaymentEvent;
use streamcart_aggregates::values::Sku;
use streamcart_schemas::topics::Context;
use streamcart_tests as support;
use streamcart_tests::clock::now_ms;
use streamcart_tests::commands::{self, DECLINED_CARD};
use streamcart_tests::ledger::{assert_sale_invariants, check_versions, fold, settled};
use streamcart_tests::world::World;

const HOT: &str = "SKU-HOT";
const HOT_UNITS: u32 = 100;
const ORDERS: usize = 2_000;
const CUSTOMERS: usize = 500;
const ROLES: [&str; 5] = ["product", "stock", "order", "payment", "sagas"];

fn spawn(world: &World, reactions: &str, role: &str, generation: usize) -> support::Child {
    let args: Vec<&str> = if role == "sagas" {
        vec!["sagas"]
    } else {
        vec!["process", role]
    };
    world.spawn_with(
        &args,
        &[
            ("STREAMCART_SNAPSHOT_EVERY_EVENTS", "5".into()),
            ("STREAMCART_CHECKPOINT_EVERY_EVENTS", "300".into()),
            ("STREAMCART_SAGA__REACTIONS", reactions.into()),
        ],
        &format!("{role}-{generation}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flash_sale_with_crashes_keeps_every_invariant() {
    flash_sale("loop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flash_sale_with_inline_reactions_and_crashes_keeps_every_invariant() {
    flash_sale("inline").await;
}

/// The sale, with the saga's reactions where `reactions` (a `saga.reactions` value) puts them.
async fn flash_sale(reactions: &str) {
    let world = World::new(&format!("flash_{reactions}")).await;
    let started = Instant::now();
    let mut generation = 0;
    let mut roles: HashMap<&str, support::Child> = ROLES
        .iter()
        .map(|r| (*r, spawn(&world, reactions, r, 0)))
        .collect();

    // The catalog and the stock.
    let skus: Vec<String> = std::iter::once(HOT.to_owned())
        .chain((1..=5).map(|i| format!("SKU-{i}")))
        .collect();
    for (i, sku) in skus.iter().enumerate() {
        let price = if i == 0 { 2_500 } else { 400 + 100 * i as i64 };
        let units = if i == 0 { HOT_UNITS } else { 1_000 };
        world
            .seed_product(sku, &format!("Product {sku}"), "sale", price, units)
            .await;
    }
    world.flush();
    // The order processor prices from its catalog copy: wait until every product is in it
    // (the read waits for one event per product created).
    let catalog = tokio::task::block_in_place(|| world.events::<ProductEvent>(Context::Catalog));
    assert!(catalog.len() >= skus.len(), "every product has its event");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let customers: Vec<_> = (0..CUSTOMERS).map(|_| commands::customer()).collect();
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(rng.random_range(500..2_000));
    let kill_one = |roles: &mut HashMap<&str, support::Child>,
                    generation: &mut usize,
                    rng: &mut rand::rngs::ThreadRng| {
        let role = *ROLES.choose(rng).expect("roles");
        if let Some(child) = roles.get_mut(role) {
            child.kill_hard();
        }
        *generation += 1;
        roles.insert(role, spawn(&world, reactions, role, *generation));
    };
    for n in 0..ORDERS {
        let mut lines = vec![OrderLineRequest {
            sku: Sku::new(HOT).expect("sku"),
            quantity: rng.random_range(1..=2),
        }];
        if n % 3 == 0 {
            for _ in 0..rng.random_range(1..=2) {
                let other = skus[rng.random_range(1..skus.len())].clone();
                if lines.iter().all(|l| l.sku.as_str() != other) {
                    lines.push(OrderLineRequest {
                        sku: Sku::new(other).expect("sku"),
                        quantity: rng.random_range(1..=3),
                    });
                }
            }
        }
        let now = now_ms();
        // One in ten orders is already past its deadline when placed; one in ten has a deadline
        // that falls while it is in flight (some expire with a payment on its way, which must be
        // refunded); one in eight is declined.
        let (placed_at, deadline_at) = match n % 10 {
            7 => (now - 10_000, now - 5_000),
            5 => (now, now + rng.random_range(150..1_500)),
            _ => (now, now + 300_000),
        };
        let card_token = if n % 8 == 3 {
            DECLINED_CARD.to_owned()
        } else {
            format!("card-{}", n % 97)
        };
        let place = PlaceOrder {
            lines,
            deadline_at,
            placed_at,
            ..commands::place_order(&customers[n % CUSTOMERS], &[], &card_token)
        };
        world.place(place).await;
        if Instant::now() >= next_kill {
            world.flush();
            kill_one(&mut roles, &mut generation, &mut rng);
            kills += 1;
            next_kill = Instant::now() + Duration::from_millis(rng.random_range(700..2_500));
        }
        if n % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    world.flush();
    // Keep crashing roles while the saga works through the backlog.
    while kills < 10 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(700..2_000))).await;
        kill_one(&mut roles, &mut generation, &mut rng);
        kills += 1;
    }

    let deadline = Instant::now() + Duration::from_secs(420);
    let (stock, orders, payments, ledger) = loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (stock, orders, payments) = tokio::task::block_in_place(|| {
            (
                world.events::<StockEvent>(Context::Inventory),
                world.events::<OrderEvent>(Context::Orders),
                world.events::<PaymentEvent>(Context::Payments),
            )
        });
        let ledger = fold(&stock, &orders, &payments);
        if settled(&ledger, ORDERS) || Instant::now() > deadline {
            break (stock, orders, payments, ledger);
        }
    };
    for child in roles.values_mut() {
        child.terminate(Duration::from_secs(30));
    }

    let confirmed = ledger
        .final_status
        .values()
        .filter(|s| *s == "confirmed")
        .count();
    let expired = ledger
        .final_status
        .values()
        .filter(|s| *s == "expired")
        .count();
    eprintln!(
        "flash sale ({reactions} reactions): orders {}, confirmed {confirmed}, cancelled {:?}, expired {expired}, late refunds {}, kills {kills}, duration {:?}",
        ledger.placed,
        ledger.cancel_reasons,
        ledger.refund_required.len(),
        started.elapsed()
    );

    // Not vacuous: the saga role of an inline run must not have run the reactions itself.
    let inline_said = world
        .log("sagas-0")
        .contains("saga reactions run in the command processors");
    assert_eq!(
        inline_said,
        reactions == "inline",
        "saga role placed its reactions as asked"
    );
    assert_sale_invariants(&ledger, ORDERS, &skus, HOT, HOT_UNITS);
    check_versions(&stock, "stock");
    check_versions(&orders, "order");
    check_versions(&payments, "payment");
    assert!(
        confirmed > 0 && confirmed <= HOT_UNITS as usize,
        "some orders confirmed, never more than the hot units"
    );
    assert!(ledger.cancel_reasons.contains_key("stock_unavailable"));
    assert!(ledger.cancel_reasons.contains_key("payment_declined"));
    assert!(expired > 0, "some orders expired");
    assert!(kills >= 10);
}
