"""The instrument stage: decide which modules are the user's, plan, rewrite and load them.

``select`` decides what is user code, ``analyze`` describes functions with
libcst, ``plan`` turns that and the configuration into data, ``rewrite`` lowers
the plan onto the ``ast`` and ``hook`` is the import hook that ties them
together.
"""
