// etcd for the end-to-end tests: the etcd server of the pinned
// go.etcd.io/etcd/server/v3 module, with the usual etcd flags.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
