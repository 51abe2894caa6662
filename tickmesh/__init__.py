"""What every tickmesh process agrees on: schema, config, endpoints, sharding, metrics, the bus."""

__version__ = "0.1.0"  # the one place the version is set: pyproject.toml reads it from here
