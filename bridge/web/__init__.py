"""HTTP edge of the bridge: FHIR facade, appservice API, health (FastAPI)."""
