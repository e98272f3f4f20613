# The production image: Airflow 3.3.2 with this project's runtime requirements (requirements.txt only: the
# sandbox's extras stay out) and the DAGs, plugins and domain package inside, so it runs as is under
# docker-compose and the official Helm chart (no DAG volume or git-sync needed).
FROM apache/airflow:3.3.2-python3.11
ARG AIRFLOW_VERSION=3.3.2
COPY requirements.txt /requirements.txt
# As the official image documents: install as the airflow user, pinning apache-airflow so no requirement
# can move it.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements.txt
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root include /opt/airflow/include
ENV PYTHONPATH=/opt/airflow/include:/opt/airflow/plugins
