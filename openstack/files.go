package openstack

// Files lists the files a collector with these options reads when it is
// built: clouds.yaml when a cloud is named (clouds_file, or where the
// OpenStack client searches) and cacert. dir resolves relative paths, as
// for New.
func (o Options) Files(dir string) []string {
	var out []string
	if o.Cloud != "" || env("OS_CLOUD") != "" {
		out = append(out, o.cloudsFiles(dir)...)
	}
	if o.CACert != "" {
		out = append(out, abs(dir, o.CACert))
	}
	return out
}

// cloudsFiles is where clouds.yaml is read from: clouds_file, or the
// OpenStack client's search path.
func (o Options) cloudsFiles(dir string) []string {
	if o.CloudsFile != "" {
		return []string{abs(dir, o.CloudsFile)}
	}
	return cloudsFiles()
}
