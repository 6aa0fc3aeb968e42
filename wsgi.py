"""WSGI entry point for gunicorn: the app, once the schema is known to be current."""
from app import create_app
from app.migrations_gate import check_schema_current

app = create_app()
check_schema_current(app)
