"""PySpark jobs: one job per file, pure ``DataFrame -> DataFrame`` functions plus a thin ``main``.

Never imports torch. Importing this package does not start Spark.
"""
