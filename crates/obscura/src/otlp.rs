//! Optional OTLP trace export (cargo feature `otlp`, off by default).
//!
//! When built with the feature and `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, every `tracing` span that
//! passes `OBSCURA_LOG` (the request spans with their `request_id`, …) is
//! exported over OTLP/HTTP (protobuf) by a batch exporter on its own
//! thread. The standard `OTEL_*` variables (headers, timeout, service name
//! via `OTEL_SERVICE_NAME`) apply.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::registry::LookupSpan;

/// Flushes buffered spans when dropped (at process exit).
pub struct Guard(SdkTracerProvider);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

fn configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

/// The OTLP layer and its guard, or `None` when no endpoint is configured.
pub fn layer<S>(
    service: &'static str,
) -> anyhow::Result<
    Option<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
        Guard,
    )>,
>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    if !configured() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("obscura");
    Ok(Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Guard(provider),
    )))
}
