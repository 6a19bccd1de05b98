"""The gateway.toml parsers: text in, typed area configuration out.

May import the core only.
"""

__all__ = [
    "adapter_config",
    "area_config",
    "broker_config",
    "certificates",
    "config_checks",
    "deadline_config",
    "intake_config",
    "limits_config",
    "metrics_config",
    "partner_config",
    "quarantine_config",
    "toml_tables",
]
