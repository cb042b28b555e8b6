"""Tenant templates run in shared web and worker processes: their nesting is capped when they are
saved, and the work of one render (loop iterations, output, time) is bounded when they run."""

import time

import pytest

from templates_app.models import Template
from templates_app.rendering import RenderTooExpensive, build_context, render_channel
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

# Three nested loops over a 300-character string: 27 million iterations from a 400-byte request.
CUBIC = "{% for a in s %}{% for b in s %}{% for c in s %}{{ c }}{% endfor %}{% endfor %}{% endfor %}"


def nested_blocks(tag: str, depth: int) -> str:
    opening = {"if": "{% if x %}", "with": "{% with y=x %}", "for": "{% for i in x %}"}[tag]
    return opening * depth + "deep" + f"{{% end{tag} %}}" * depth


def create(client, text, code="t"):
    return client.post("/api/v1/templates", {"code": code, "channels": {"sms": {"text": text}}}, format="json")


def render(client, code, **body):
    return client.post(f"/api/v1/templates/{code}/render", body, format="json")


def render_sms(text, **data):
    return render_channel({"text": text}, "sms", build_context("Acme", {}, data))


# --- nesting, checked at save ------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["if", "with", "for"])
def test_3000_nested_blocks_are_a_400_at_save(admin, tag):
    response = create(admin, nested_blocks(tag, 3000))

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "nested more than" in error["message"]
    assert error["details"]["fields"]["channels"]["sms"]["text"]
    assert not Template.objects.exists()


def test_nesting_at_the_limit_is_accepted_and_one_more_is_not(admin, settings):
    settings.ALERTFLOW_TEMPLATE_MAX_NESTING = 5

    assert create(admin, nested_blocks("if", 5), code="at-limit").status_code == 201
    response = create(admin, nested_blocks("if", 6), code="over")

    assert response.status_code == 400
    assert "nested more than 5 blocks deep" in response.json()["error"]["message"]


def test_siblings_do_not_add_up_to_nesting(admin, settings):
    settings.ALERTFLOW_TEMPLATE_MAX_NESTING = 2

    response = create(admin, "{% if a %}{% if b %}x{% endif %}{% endif %}" * 50)

    assert response.status_code == 201, response.content


def test_blocks_inside_a_comment_are_not_counted(admin, settings):
    settings.ALERTFLOW_TEMPLATE_MAX_NESTING = 2

    response = create(admin, "{% comment %}" + "{% if a %}" * 10 + "{% endcomment %}Hi")

    assert response.status_code == 201, response.content


def test_an_overlong_condition_is_a_400_at_save(admin):
    response = create(admin, "{% if " + "not " * 3000 + "x %}y{% endif %}")

    assert response.status_code == 400, response.content
    assert "condition" in response.json()["error"]["message"]


def test_inline_content_nested_too_deep_is_refused_at_accept(admin, tenant):
    from tests.factories import RecipientFactory

    RecipientFactory(tenant=tenant, external_id="ada", phone="+14155552671")
    body = {"recipient": "ada", "channels": ["sms"], "content": {"sms": {"text": nested_blocks("with", 3000)}}}

    response = admin.post("/api/v1/notifications", body, format="json")

    assert response.status_code == 400, response.content
    assert "nested more than" in response.json()["error"]["message"]


# --- the cost of one render ----------------------------------------------------------------------


def test_the_cubic_preview_is_refused_quickly_with_render_too_expensive(tenant, member, outsider):
    TemplateFactory(tenant=tenant, code="cubic", channels={"sms": {"text": CUBIC}})

    # CPU time of this thread (the test client renders in it), not the wall clock: a loaded
    # machine stretches the latter. The whole render took 12.4 s of CPU before the budget.
    started = time.thread_time()
    response = render(member, "cubic", channel="sms", data={"s": "x" * 300})
    spent = time.thread_time() - started

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "render_too_expensive"
    assert error["details"] == {"field": "sms.text", "limit": "loop_iterations", "max": 10000}
    assert spent < 2
    assert render(outsider, "cubic", channel="sms", data={"s": "x"}).status_code == 404


def test_loops_within_the_iteration_budget_render(settings):
    settings.ALERTFLOW_RENDER_MAX_LOOP_ITERATIONS = 12  # 3 outer + 3 x 3 inner

    result = render_sms("{% for a in s %}{% for b in s %}{{ a }}{{ b }},{% endfor %}{% endfor %}", s="xyz")

    assert result.fields["text"].count(",") == 9


def test_one_iteration_past_the_budget_is_refused(settings):
    settings.ALERTFLOW_RENDER_MAX_LOOP_ITERATIONS = 11

    with pytest.raises(RenderTooExpensive) as raised:
        render_sms("{% for a in s %}{% for b in s %}{{ a }}{{ b }},{% endfor %}{% endfor %}", s="xyz")

    assert raised.value.details["limit"] == "loop_iterations"


def test_the_budget_is_shared_by_every_field_of_a_channel(settings):
    settings.ALERTFLOW_RENDER_MAX_LOOP_ITERATIONS = 5
    content = {"title": "{% for c in s %}{{ c }}{% endfor %}", "body": "{% for c in s %}{{ c }}{% endfor %}"}

    with pytest.raises(RenderTooExpensive) as raised:
        render_channel(content, "push", build_context("Acme", {}, {"s": "abc"}))

    assert raised.value.field == "push.body"


def test_output_past_the_limit_is_refused_before_it_is_built(settings):
    settings.ALERTFLOW_RENDER_MAX_OUTPUT_CHARS = 100_000

    with pytest.raises(RenderTooExpensive) as raised:
        render_sms("{% for i in loop %}{{ big }}{% endfor %}", loop="x" * 1000, big="y" * 50_000)

    assert raised.value.details["limit"] == "output_chars"


def test_join_cannot_multiply_its_separator_past_the_output_limit(settings):
    settings.ALERTFLOW_RENDER_MAX_OUTPUT_CHARS = 100_000

    with pytest.raises(RenderTooExpensive):
        render_sms("{{ s|make_list|join:sep }}", s="x" * 1000, sep="-" * 1000)
    assert render_sms("{{ s|make_list|join:',' }}", s="abc").fields["text"] == "a,b,c"


def test_a_render_past_its_time_is_refused(settings):
    settings.ALERTFLOW_RENDER_MAX_SECONDS = 0

    with pytest.raises(RenderTooExpensive) as raised:
        render_sms("Hi {{ name }}", name="Ada")

    assert raised.value.details["limit"] == "seconds"


def test_waiting_for_a_core_does_not_count_as_render_time(settings, monkeypatch):
    from templates_app import sandbox

    settings.ALERTFLOW_RENDER_MAX_SECONDS = 1
    # The wall clock says an hour went by (the process was descheduled); the CPU clock does not.
    monkeypatch.setattr(sandbox.time, "monotonic", lambda: time.perf_counter() + 3600)

    assert render_sms("{% for c in s %}{{ c }}{% endfor %}", s="abc").fields["text"] == "abc"


def test_a_normal_render_is_unaffected():
    text = "{% for item in items %}{% if item.qty > 1 %}{{ item.qty }} x {% endif %}{{ item.name }}; {% endfor %}"

    result = render_sms(text, items=[{"name": "tea", "qty": 2}, {"name": "cake", "qty": 1}])

    assert result.fields["text"] == "2 x tea; cake; "
