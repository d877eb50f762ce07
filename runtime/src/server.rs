//! The gRPC server: every `kar.v1` service, server reflection (v1 and
//! v1alpha) and `grpc.health.v1`, on one listener.

use crate::api::{ActorsApi, AppApi, EventsApi, Limits, MeshApi, RemindersApi, ServicesApi, StateApi};
use crate::engine::Engine;
use futures::StreamExt;
use kar_proto::v1::{
    actors_service_server::ActorsServiceServer, app_service_server::AppServiceServer,
    events_service_server::EventsServiceServer, mesh_service_server::MeshServiceServer,
    reminders_service_server::RemindersServiceServer, services_service_server::ServicesServiceServer,
    state_service_server::StateServiceServer,
};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// A failure to build or run the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reflection service could not read the descriptor set.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the API for `engine` on `listener` until `shutdown` resolves.
pub async fn serve(
    engine: Engine,
    limits: Limits,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let max_message = limits.max_payload_bytes + 64 * 1024;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(kar_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ActorsServiceServer<ActorsApi>>().await;
    health.set_serving::<ServicesServiceServer<ServicesApi>>().await;
    health.set_serving::<StateServiceServer<StateApi>>().await;
    health.set_serving::<AppServiceServer<AppApi>>().await;
    health.set_serving::<MeshServiceServer<MeshApi>>().await;
    health.set_serving::<RemindersServiceServer<RemindersApi>>().await;
    health.set_serving::<EventsServiceServer<EventsApi>>().await;

    let incoming = TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream {
            // Small request/response messages must not wait for Nagle.
            let _ = stream.set_nodelay(true);
        }
        stream
    });
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(
            ActorsServiceServer::new(ActorsApi::new(engine.clone(), limits)).max_decoding_message_size(max_message),
        )
        .add_service(
            ServicesServiceServer::new(ServicesApi::new(engine.clone(), limits)).max_decoding_message_size(max_message),
        )
        .add_service(
            StateServiceServer::new(StateApi::new(engine.clone(), limits)).max_decoding_message_size(max_message),
        )
        .add_service(AppServiceServer::new(AppApi::new(engine.clone())).max_decoding_message_size(max_message))
        .add_service(
            RemindersServiceServer::new(RemindersApi::new(engine.clone(), limits)).max_decoding_message_size(max_message),
        )
        .add_service(
            EventsServiceServer::new(EventsApi::new(engine.clone(), limits)).max_decoding_message_size(max_message),
        )
        .add_service(MeshServiceServer::new(MeshApi::new(engine)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
