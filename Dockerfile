FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --create-home revplan && mkdir -p var/prometheus var/radicale var/secrets && chown -R revplan var
RUN DJANGO_SETTINGS_MODULE=revplan.settings SECRET_KEY=collectstatic python manage.py collectstatic --noinput
USER revplan

EXPOSE 8000
# The system checks first: gunicorn runs none, and they warn about a database role that could alter the ledger.
CMD ["sh", "-c", "python manage.py check && exec gunicorn revplan.wsgi:application --bind 0.0.0.0:8000 --workers 3 --access-logfile -"]
