"""The load benchmark (``python manage.py benchmark``): see :mod:`booking.benchmark.runner`."""
