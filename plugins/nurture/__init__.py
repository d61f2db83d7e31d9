"""Nurture: lifecycle marketing programs as code.

Importing this package is cheap on purpose: DAG files import it at parse time, so nothing
here touches a network, a database or a heavy library.
"""
