"""tickmesh-web: a live web view of the event tape and of the mesh."""
