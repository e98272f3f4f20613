# The Airflow image with this project's pinned requirements and the domain package.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
COPY --chown=airflow:root include /opt/airflow/include
ENV PYTHONPATH=/opt/airflow/include:/opt/airflow/plugins
