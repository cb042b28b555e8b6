"""Migration operations Django's own do too much for."""

from django.db import migrations, models


class DropForeignKeyIndex(migrations.AlterField):
    """A ForeignKey's change to `db_index=False`: drops the index Django gave the column, and
    nothing else.

    Django's `AlterField` for the same change also drops the foreign key constraint and adds it
    again, and PostgreSQL validates an added constraint against every row, holding a lock that
    stops the table's writes meanwhile: on the message table, a full scan per column for nothing.
    The index is found as `AlterField` finds it: a b-tree index on the column alone that the
    model does not declare itself (`Meta.indexes`)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        declared = {index.name for index in model._meta.indexes}
        column = model._meta.get_field(self.name).column
        for name in schema_editor._constraint_names(
            model, [column], index=True, type_=models.Index.suffix, exclude=declared
        ):
            schema_editor.execute(schema_editor._delete_index_sql(model, name))

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        # The index as Django names and creates a ForeignKey's own.
        schema_editor.execute(schema_editor._create_index_sql(model, fields=[model._meta.get_field(self.name)]))

    def describe(self) -> str:
        return f"Drop the index of its own of {self.model_name}.{self.name}"
