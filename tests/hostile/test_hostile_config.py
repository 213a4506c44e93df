"""Hostile configs: each fault is named by key, before any training starts."""

from __future__ import annotations

import pytest

from marginface.train.config import config_from_dict


@pytest.mark.fault(kind="config (YAML)", fault="unknown key",
                   behaviour="ValueError naming the dotted key and the valid keys")
def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"model\.bogus.*valid keys"):
        config_from_dict({"model": {"name": "mobilefacenet", "bogus": 1}})
