//! `streamcart.catalog`: the product's commands, events and snapshot state.

use apache_avro::types::Value;
use streamcart_aggregates::catalog::{
    ChangeCategory, ChangePrice, CreateProduct, DiscontinueProduct, ProductCategoryChanged,
    ProductCommand, ProductCreated, ProductDiscontinued, ProductEvent, ProductPriceChanged,
    ProductRecord, ProductRenamed, ProductState, RenameProduct,
};

use super::value::{Fields, branch, optional, record};
use super::{money, payload_branch, unknown_branch};
use crate::envelope::{AvroPayload, CommandPayload, EventPayload, SnapshotState};
use crate::error::MappingError;
use crate::topics::Context;

impl AvroPayload for ProductCommand {
    const CONTEXT: Context = Context::Catalog;

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(match self {
            ProductCommand::CreateProduct(c) => branch(
                0,
                record(vec![
                    ("sku", Value::String(c.sku.clone())),
                    ("name", Value::String(c.name.clone())),
                    ("category", Value::String(c.category.clone())),
                    ("price", money(&c.price)),
                ]),
            ),
            ProductCommand::RenameProduct(c) => {
                branch(1, record(vec![("name", Value::String(c.name.clone()))]))
            }
            ProductCommand::ChangePrice(c) => branch(2, record(vec![("price", money(&c.price))])),
            ProductCommand::ChangeCategory(c) => branch(
                3,
                record(vec![("category", Value::String(c.category.clone()))]),
            ),
            ProductCommand::DiscontinueProduct(DiscontinueProduct) => branch(4, record(vec![])),
        })
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let (index, value) = payload_branch("ProductCommandEnvelope", value)?;
        Ok(match index {
            0 => {
                let mut f = Fields::new("CreateProduct", value)?;
                CreateProduct {
                    sku: f.string("sku")?,
                    name: f.string("name")?,
                    category: f.string("category")?,
                    price: f.money("price")?,
                }
                .into()
            }
            1 => {
                let mut f = Fields::new("RenameProduct", value)?;
                RenameProduct {
                    name: f.string("name")?,
                }
                .into()
            }
            2 => {
                let mut f = Fields::new("ChangePrice", value)?;
                ChangePrice {
                    price: f.money("price")?,
                }
                .into()
            }
            3 => {
                let mut f = Fields::new("ChangeCategory", value)?;
                ChangeCategory {
                    category: f.string("category")?,
                }
                .into()
            }
            4 => {
                Fields::new("DiscontinueProduct", value)?;
                DiscontinueProduct.into()
            }
            other => return Err(unknown_branch("ProductCommandEnvelope", other)),
        })
    }
}
impl CommandPayload for ProductCommand {}

impl AvroPayload for ProductEvent {
    const CONTEXT: Context = Context::Catalog;

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(match self {
            ProductEvent::ProductCreated(e) => branch(
                0,
                record(vec![
                    ("sku", Value::String(e.sku.as_str().to_owned())),
                    ("name", Value::String(e.name.clone())),
                    ("category", Value::String(e.category.clone())),
                    ("price", money(&e.price)),
                ]),
            ),
            ProductEvent::ProductRenamed(e) => {
                branch(1, record(vec![("name", Value::String(e.name.clone()))]))
            }
            ProductEvent::ProductPriceChanged(e) => {
                branch(2, record(vec![("price", money(&e.price))]))
            }
            ProductEvent::ProductCategoryChanged(e) => branch(
                3,
                record(vec![
                    ("from", Value::String(e.from.clone())),
                    ("to", Value::String(e.to.clone())),
                ]),
            ),
            ProductEvent::ProductDiscontinued(ProductDiscontinued) => branch(4, record(vec![])),
        })
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let (index, value) = payload_branch("ProductEventEnvelope", value)?;
        Ok(match index {
            0 => {
                let mut f = Fields::new("ProductCreated", value)?;
                ProductCreated {
                    sku: f.sku("sku")?,
                    name: f.string("name")?,
                    category: f.string("category")?,
                    price: f.money("price")?,
                }
                .into()
            }
            1 => {
                let mut f = Fields::new("ProductRenamed", value)?;
                ProductRenamed {
                    name: f.string("name")?,
                }
                .into()
            }
            2 => {
                let mut f = Fields::new("ProductPriceChanged", value)?;
                ProductPriceChanged {
                    price: f.money("price")?,
                }
                .into()
            }
            3 => {
                let mut f = Fields::new("ProductCategoryChanged", value)?;
                ProductCategoryChanged {
                    from: f.string("from")?,
                    to: f.string("to")?,
                }
                .into()
            }
            4 => {
                Fields::new("ProductDiscontinued", value)?;
                ProductDiscontinued.into()
            }
            other => return Err(unknown_branch("ProductEventEnvelope", other)),
        })
    }
}
impl EventPayload for ProductEvent {}

impl AvroPayload for ProductState {
    const CONTEXT: Context = Context::Catalog;

    fn to_avro(&self) -> Result<Value, MappingError> {
        let product = self.product.as_ref().map(|p| {
            record(vec![
                ("sku", Value::String(p.sku.as_str().to_owned())),
                ("name", Value::String(p.name.clone())),
                ("category", Value::String(p.category.clone())),
                ("price", money(&p.price)),
                ("discontinued", Value::Boolean(p.discontinued)),
            ])
        });
        Ok(record(vec![("product", optional(product))]))
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let mut f = Fields::new("ProductState", value)?;
        let product = match f.take("product")? {
            Value::Null => None,
            v => {
                let mut p = Fields::new("ProductRecord", v)?;
                Some(ProductRecord {
                    sku: p.sku("sku")?,
                    name: p.string("name")?,
                    category: p.string("category")?,
                    price: p.money("price")?,
                    discontinued: p.boolean("discontinued")?,
                })
            }
        };
        Ok(Self { product })
    }
}
impl SnapshotState for ProductState {}
