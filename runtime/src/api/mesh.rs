//! `MeshService`: introspection of components and active actors.

use super::convert;
use crate::engine::Engine;
use kar_proto::v1::{self, mesh_service_server::MeshService};
use tonic::{Request, Response, Status};

/// Serves `kar.v1.MeshService`.
pub struct MeshApi {
    engine: Engine,
}

impl MeshApi {
    /// The service over `engine`.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl MeshService for MeshApi {
    async fn list_components(
        &self,
        _request: Request<v1::ListComponentsRequest>,
    ) -> Result<Response<v1::ListComponentsResponse>, Status> {
        let components = self
            .engine
            .components()
            .into_iter()
            .map(|c| v1::Component {
                id: c.id,
                name: c.registration.name,
                actor_types: c.registration.actor_types,
                service: c.registration.service.unwrap_or_default(),
                runtime_id: self.engine.runtime_id().to_owned(),
                connected_at: Some(prost_types::Timestamp::from(c.connected_at)),
                in_flight: c.in_flight as u32,
            })
            .collect();
        Ok(Response::new(v1::ListComponentsResponse { components }))
    }

    async fn list_actors(
        &self,
        request: Request<v1::ListActorsRequest>,
    ) -> Result<Response<v1::ListActorsResponse>, Status> {
        let kind = Some(request.get_ref().r#type.as_str()).filter(|t| !t.is_empty());
        let actors = self
            .engine
            .active_actors(kind)
            .into_iter()
            .map(|a| v1::ActiveActor { actor: Some(convert::to_actor_ref(&a.actor)), component_id: a.component_id })
            .collect();
        Ok(Response::new(v1::ListActorsResponse { actors }))
    }
}
