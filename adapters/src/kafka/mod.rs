//! A small synchronous Kafka client over `std::net::TcpStream`, using the `kafka-protocol` crate for the wire format.

pub mod client;
pub mod conn;
pub mod direct;
pub mod error;
pub mod inputs;
mod jks;
pub mod pool;
pub mod records;
pub mod sasl;
pub mod security;
mod tls;
pub mod trace;

pub use client::{
    Acks, Client, ClientConfig, FetchedPartition, IsolationLevel, OffsetSpec, PartitionFetch, PartitionState,
};
pub use error::{KafkaError, Result};
pub use security::{
    cipher_suite_names, Secret, Security, SecurityError, SecuritySettings, Store, StoreType, TlsVersion,
};
