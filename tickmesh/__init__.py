"""What every tickmesh process agrees on: schema, config, endpoints, sharding, metrics, the bus."""
