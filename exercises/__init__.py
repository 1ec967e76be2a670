"""The bundled exercise bank: one YAML file per exercise (shipped as package data)."""
