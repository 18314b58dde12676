//! Container network modes: host, none, bridge (CNI) with a pool of pre-created network namespaces.
