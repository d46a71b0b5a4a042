package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// MeshdriftNamespace is where the shipped manifests deploy meshdrift; tests read istiod
// with a token from here, as the deployed meshdrift does.
const MeshdriftNamespace = "meshdrift-system"

// IstioCAAudience is the audience istiod accepts on xDS bearer tokens (TOKEN_AUDIENCES).
const IstioCAAudience = "istio-ca"

// tokenLifetime outlives any test run; the kubelet would rotate a real projected token.
const tokenLifetime = 6 * 3600

// ServiceAccountToken requests a token for a ServiceAccount through the TokenRequest API,
// as the kubelet does for a projected volume, creating the namespace and the
// ServiceAccount first when they are missing (the bed runs no controller-manager).
func (k *Kube) ServiceAccountToken(ctx context.Context, namespace, serviceAccount string, audiences ...string) (string, error) {
	if err := k.EnsureServiceAccount(ctx, namespace, serviceAccount); err != nil {
		return "", err
	}
	exp := int64(tokenLifetime)
	tr, err := k.Clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", namespace, serviceAccount, err)
	}
	return tr.Status.Token, nil
}

// TokenFile writes an istio-ca token of namespace/serviceAccount to a file, the way the
// shipped manifests mount one into meshdrift, and returns its path.
func (k *Kube) TokenFile(ctx context.Context, namespace, serviceAccount string) (string, error) {
	tok, err := k.ServiceAccountToken(ctx, namespace, serviceAccount, IstioCAAudience)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(k.LogDir, "tokens")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("token directory: %w", err)
	}
	f, err := os.CreateTemp(dir, namespace+"-"+serviceAccount+"-*.token")
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if _, err := f.WriteString(tok); err != nil {
		f.Close()
		return "", fmt.Errorf("token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	return f.Name(), nil
}

// EnsureServiceAccount creates a namespace and a ServiceAccount in it when missing.
func (k *Kube) EnsureServiceAccount(ctx context.Context, namespace, name string) error {
	if err := k.CreateNamespace(ctx, namespace); err != nil {
		return err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := k.Clientset.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account %s/%s: %w", namespace, name, err)
	}
	return nil
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates to the bed's API server
// as namespace/serviceAccount with a TokenRequest token of the API server's own audience,
// as in-cluster config would, and returns its path. A program run with it is authorized
// by whatever RBAC binds that ServiceAccount, not as the bed's admin.
func (k *Kube) ServiceAccountKubeconfig(ctx context.Context, namespace, serviceAccount string) (string, error) {
	tok, err := k.ServiceAccountToken(ctx, namespace, serviceAccount)
	if err != nil {
		return "", err
	}
	name := namespace + "-" + serviceAccount
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["bed"] = &clientcmdapi.Cluster{Server: k.Config.Host, CertificateAuthorityData: k.Config.CAData}
	if len(k.Config.CAData) == 0 && k.Config.CAFile != "" {
		cfg.Clusters["bed"].CertificateAuthority = k.Config.CAFile
	}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tok}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "bed", AuthInfo: name}
	cfg.CurrentContext = name
	path := filepath.Join(k.LogDir, "tokens", name+".kubeconfig")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("kubeconfig directory: %w", err)
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("writing kubeconfig for %s: %w", name, err)
	}
	return path, nil
}
