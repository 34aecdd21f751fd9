// Command vcsim serves govmomi's vSphere API simulator for vmwarden's tests.
//
// Debian's golang-github-vmware-govmomi-dev ships the simulator package but not vcsim's
// main, so the project carries this launcher (built by scripts/build-vcsim.sh). It listens
// on 127.0.0.1 only, with TLS (a self-signed certificate unless -cert/-key are given), and
// checks one user and password (-user/-pass), so refused logins can be tested. It prints
// the SDK URL (without credentials) on its first line and serves until killed.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
	// The vAPI REST endpoints (/rest/com/vmware/cis/session, .../tagging/...): vCenter tags.
	_ "github.com/vmware/govmomi/vapi/simulator"
)

func main() {
	model := simulator.VPX()
	flag.IntVar(&model.Datacenter, "dc", 1, "datacenters")
	flag.IntVar(&model.Cluster, "cluster", 1, "clusters per datacenter")
	flag.IntVar(&model.ClusterHost, "host", 3, "hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", 1, "standalone hosts per datacenter")
	flag.IntVar(&model.Machine, "vm", 2, "VMs per host")
	flag.IntVar(&model.Portgroup, "pg", 1, "distributed portgroups per datacenter")
	port := flag.Int("port", 0, "TCP port on 127.0.0.1 (0: any free port)")
	user := flag.String("user", "user", "the one user name accepted")
	pass := flag.String("pass", "pass", "its password")
	cert := flag.String("cert", "", "PEM certificate (default: self-signed)")
	key := flag.String("key", "", "PEM key of -cert")
	flag.Parse()

	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	model.Service.Listen = &url.URL{Host: fmt.Sprintf("127.0.0.1:%d", *port), User: url.UserPassword(*user, *pass)}
	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true // the vAPI REST endpoints imported above
	if *cert != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			log.Fatal(err)
		}
		model.Service.TLS.Certificates = []tls.Certificate{pair}
	}
	server := model.Service.NewServer()
	u := *server.URL
	u.User = nil
	fmt.Println(u.String())
	os.Stdout.Sync()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	server.Close()
	model.Remove()
}
