"""Django's template backend, with each page's context let go of when its rendering ends.

A template rendered with a request (every admin page) gets a RequestContext onto which
django.template.context.make_context pushes the view's dict as a ContextDict — and a ContextDict refers back to
its context. That cycle held everything the page showed (a changelist's 50 plans with their accounts and
owners, ~1,100 objects; the Active plans page ~3,900) until the garbage collector's full pass, which then ran
every few admin requests and walked them: the pages' p95 (tests/bench/bench_read_side.py). Emptying the
context's stack once a render has succeeded breaks the cycle, and reference counting frees the page when it is
sent.
"""
from django.template import TemplateDoesNotExist
from django.template.backends.django import DjangoTemplates, Template, reraise
from django.template.context import make_context


class ReleasingTemplate(Template):
    # Django's Template.render (django/template/backends/django.py, Django 5.2) with the stack emptied after a
    # render that succeeded; one that failed keeps its context for the debug page's frames (and the collector).
    def render(self, context=None, request=None):
        context = make_context(context, request, autoescape=self.backend.engine.autoescape)
        try:
            rendered = self.template.render(context)
        except TemplateDoesNotExist as exc:
            reraise(exc, self.backend)
        # Nothing reads the context after rendering (the test client keeps a copy of its own, made while
        # rendering, whose stack is a separate list).
        context.dicts.clear()
        return rendered


class ReleasingDjangoTemplates(DjangoTemplates):
    def from_string(self, template_code):
        return ReleasingTemplate(self.engine.from_string(template_code), self)

    def get_template(self, template_name):
        try:
            return ReleasingTemplate(self.engine.get_template(template_name), self)
        except TemplateDoesNotExist as exc:
            reraise(exc, self)
