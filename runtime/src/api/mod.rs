//! The gRPC API: one tonic service per `kar.v1` service, each a thin
//! translation between wire messages and the engine. Wire types stop here.

pub(crate) mod convert;
pub(crate) mod status;

mod actors;
pub(crate) mod app;
mod events;
mod mesh;
mod reminders;
mod state;

pub use actors::{ActorsApi, ServicesApi};
pub use app::AppApi;
pub use events::EventsApi;
pub use mesh::MeshApi;
pub use reminders::RemindersApi;
pub use state::StateApi;

/// Limits the API enforces on input.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest payload or state value accepted, in bytes.
    pub max_payload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_payload_bytes: 4 * 1024 * 1024 - 64 * 1024 }
    }
}
