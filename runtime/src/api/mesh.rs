//! `MeshService`: introspection of the application's runtimes (the sidecar
//! registry in the store), components and active actors.

use super::{convert, status};
use crate::engine::Engine;
use crate::sidecar::{self, SidecarInfo};
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

    async fn list_sidecars(
        &self,
        _request: Request<v1::ListSidecarsRequest>,
    ) -> Result<Response<v1::ListSidecarsResponse>, Status> {
        let sidecars = sidecar::list(self.engine.store().as_ref()).await.map_err(status::from_store)?;
        Ok(Response::new(v1::ListSidecarsResponse { sidecars: sidecars.into_iter().map(to_sidecar).collect() }))
    }
}

fn to_sidecar(info: SidecarInfo) -> v1::Sidecar {
    let started_at = prost_types::Timestamp {
        seconds: (info.started_at_ms / 1000).min(i64::MAX as u64) as i64,
        nanos: (info.started_at_ms % 1000) as i32 * 1_000_000,
    };
    v1::Sidecar {
        runtime_id: info.runtime_id,
        address: info.address,
        app: info.app,
        deployment: info.deployment,
        started_at: Some(started_at),
        actor_types: info.actor_types,
        services: info.services,
        partitions: info.partitions,
    }
}
