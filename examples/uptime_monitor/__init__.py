"""An uptime monitor ("a service like pingdom"): many sites checked at once through
`requests`, every check stored in Cassandra, a status page served by Starlette on uvloop.

    python -m examples.uptime_monitor                      # offline: demo sites, embedded CQL
    python -m examples.uptime_monitor --cassandra 10.0.0.1,10.0.0.2 --sites sites.txt
"""
