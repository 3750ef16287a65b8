// Judges one certificate chain with Go's crypto/x509 verifier, the third opinion of the root
// rollover test (test/e2e/verify-chains.ts builds and runs it):
//
//	go-verify TRUST.pem CHAIN.pem client|server
//
// TRUST.pem holds the roots a relying party trusts; CHAIN.pem the leaf followed by what its
// holder sends. Exit 0 and "ok" when a path verifies for the purpose (clientAuth or serverAuth),
// else exit 1 with Go's reason. Go checks no CRLs: revocation is OpenSSL's and GnuTLS's to judge.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

func certificates(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, c)
	}
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: go-verify TRUST.pem CHAIN.pem client|server")
		os.Exit(2)
	}
	roots, err := certificates(os.Args[1])
	if err != nil || len(roots) == 0 {
		fmt.Println("no trusted roots:", err)
		os.Exit(1)
	}
	chain, err := certificates(os.Args[2])
	if err != nil || len(chain) == 0 {
		fmt.Println("no chain:", err)
		os.Exit(1)
	}
	o := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if os.Args[3] == "client" {
		o.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, r := range roots {
		o.Roots.AddCert(r)
	}
	for _, c := range chain[1:] {
		o.Intermediates.AddCert(c)
	}
	if _, err := chain[0].Verify(o); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("ok")
}
