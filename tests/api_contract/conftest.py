from schemathesis.pytest.plugin import SchemathesisFunction


def pytest_collection_modifyitems(items):
    """Give each operation's test its own node id: `test_...[GET /api/v1/recipients/]`.

    schemathesis 4.32 names the items that way but hands pytest 9 the bare function name to build
    the node id from, so all of them share one id, and pytest-xdist, which schedules and reports
    by id, runs and reports only one of them.
    """
    for item in items:
        if isinstance(item, SchemathesisFunction) and item.nodeid.endswith("::" + item.originalname):
            item._id = item.parent.id.child(item.originalname).with_params(item.operation_label)
