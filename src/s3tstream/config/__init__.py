"""Configuration: the pydantic model, names derived from it, environment overrides."""
