"""Behavioural features declared once, computed point-in-time for training and served online.

- :mod:`feature_store.definitions`: ``Entity``, ``Feature``, ``FeatureView``, ``FeatureSet``, ``Registry``.
- :mod:`feature_store.aggregations`: a view's state (``Count``, ``WindowCount``, ``Sum``, ``Max``,
  ``DistinctCount``, ``DecayedSum``, ...), each computed by polars offline and folded by a live event.
- :mod:`feature_store.read_out`: a feature's read-out (``col``, numbers, operators,
  ``days_between``), evaluated by polars offline and by numpy online, with the same bits.
- :mod:`feature_store.repository`: ``views(config)`` (the list of views), ``build_registry(config)``,
  ``default_feature_set(config)``.
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
