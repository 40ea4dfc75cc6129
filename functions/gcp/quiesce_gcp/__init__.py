"""Quiesce on Google Cloud: adapters for the core's ports (disk snapshots, hooks through the
guest agent, Pub/Sub events, Firestore state) and the Cloud Functions entry points."""
