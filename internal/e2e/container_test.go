package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"kantai.dev/kantai/internal/k8stest"
)

// containerCommand turns a pod's first container into a local command, as
// a kubelet would start it: bin in place of the image, the container's
// args, its env with downward-API fields resolved (the pod IP is ip), and
// Secret volumes written to a directory whose path replaces the mount
// path in args and env.
func containerCommand(ctx context.Context, pod *corev1.Pod, ip, dir string) (args, env []string, err error) {
	if len(pod.Spec.Containers) == 0 {
		return nil, nil, fmt.Errorf("pod %s has no containers", pod.Name)
	}
	c := pod.Spec.Containers[0]
	mounts := map[string]string{} // mount path → local directory
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			var s corev1.Secret
			if err := k8sClient.Get(ctx, k8stest.Key(pod.Namespace, v.Secret.SecretName), &s); err != nil {
				return nil, nil, fmt.Errorf("pod %s: secret volume %s: %w", pod.Name, v.Name, err)
			}
			local := filepath.Join(dir, pod.Name+"-"+v.Name)
			if err := os.MkdirAll(local, 0o700); err != nil {
				return nil, nil, err
			}
			for k, data := range s.Data {
				if err := os.WriteFile(filepath.Join(local, k), data, 0o600); err != nil {
					return nil, nil, err
				}
			}
			mounts[vm.MountPath] = local
		}
	}
	rewrite := func(s string) string {
		for mp, local := range mounts {
			s = strings.ReplaceAll(s, mp, local)
		}
		return s
	}
	for _, a := range append(append([]string(nil), c.Command[min(1, len(c.Command)):]...), c.Args...) {
		args = append(args, rewrite(a))
	}
	for _, e := range c.Env {
		v := e.Value
		if f := e.ValueFrom; f != nil && f.FieldRef != nil {
			switch f.FieldRef.FieldPath {
			case "spec.nodeName":
				v = pod.Spec.NodeName
			case "status.podIP":
				v = ip
			case "metadata.name":
				v = pod.Name
			case "metadata.namespace":
				v = pod.Namespace
			default:
				return nil, nil, fmt.Errorf("pod %s: env %s: field %s not emulated", pod.Name, e.Name, f.FieldRef.FieldPath)
			}
		}
		env = append(env, e.Name+"="+rewrite(v))
	}
	return args, env, nil
}
