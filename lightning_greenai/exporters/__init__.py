"""Live exporters of a run's spend: Prometheus and OpenTelemetry."""
