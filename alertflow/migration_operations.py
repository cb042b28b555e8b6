"""Migration operations Django's own do too much for."""

from django.db import migrations


class DropForeignKeyIndex(migrations.AlterField):
    """A ForeignKey's change to `db_index=False`: drops the index Django gave the column, and
    nothing else.

    Django's `AlterField` for the same change also drops the foreign key constraint and adds it
    again, and PostgreSQL validates an added constraint against every row, holding a lock that
    stops the table's writes meanwhile: on the message table, a full scan per column for nothing.
    The index is found by what it is (the one non-unique index on that column alone), not by
    name, so a database whose index Django named otherwise loses it too."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        table, column = model._meta.db_table, model._meta.get_field(self.name).column
        with schema_editor.connection.cursor() as cursor:
            constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
        for name, constraint in constraints.items():
            if constraint["index"] and not constraint["unique"] and constraint["columns"] == [column]:
                schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        # The index as Django names and creates a ForeignKey's own.
        schema_editor.execute(schema_editor._create_index_sql(model, fields=[model._meta.get_field(self.name)]))

    def describe(self) -> str:
        return f"Drop the index of its own of {self.model_name}.{self.name}"
