"""Behavioural features declared once, computed point-in-time for training and served online.

- :mod:`feature_store.definitions`: ``Entity``, ``FeatureView``, ``FeatureSet``, ``Registry``.
- :mod:`feature_store.repository`: ``build_registry(config)``, ``default_feature_set(config)``.
- :mod:`feature_store.offline`: ``materialize``, ``training_frame``,
  ``write_materialized``, ``read_materialized``.
- :mod:`feature_store.online`: ``open_online_store`` (SQLite | Redis), ``push_materialized``,
  ``apply_events``, ``get_online_features``, ``get_user_history``.
- :mod:`feature_store.covisit`: ``covisitation(interactions, config)``, the item-to-item table.

Example::

    frames = materialize(interactions, items, as_of, config.features)
    with open_online_store(config.features, runs_dir) as store:
        push_materialized(store, frames, as_of)
        get_online_features(store, "u1", ["i1", "i2"], now=as_of)  # == training_frame at ts=as_of
"""
