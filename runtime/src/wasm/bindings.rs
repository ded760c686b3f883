//! The one `bindgen!` of the contract: the `host` world, the union of every capability the
//! runtime offers and every interface a plugin may export.

wasmtime::component::bindgen!({
    world: "host",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
    // Batches cross into the guest borrowed from their encoded buffers (`convert::Encoded`):
    // no copy before the one into guest memory.
    ownership: Borrowing { duplicate_if_necessary: true },
});

/// The contract version this runtime implements, as plugins spell it in their exports.
pub const CONTRACT_VERSION: &str = "0.3.0";
/// The contract's package, without version.
pub const CONTRACT_PACKAGE: &str = "wasmconnect:plugin";
