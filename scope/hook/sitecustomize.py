# Put first on PYTHONPATH by scope while it records a program: records a child
# process too.  Any Python must survive it (a child may run another interpreter,
# without scope), and it prints nothing.
try:
    import scope.child
except Exception:
    pass
else:
    scope.child.start(__file__)
